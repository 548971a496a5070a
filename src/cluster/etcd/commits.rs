//! Group commit of offsets in etcd: concurrent OffsetCommit requests share fenced etcd
//! transactions (see `commit_writer`).

use super::*;

/// One OffsetCommit's puts (at most [`MAX_TXN_OPS`]), the compare that fences them, and
/// who waits for them.
pub(super) struct CommitJob {
    pub(super) fence: Compare,
    pub(super) claim: SlotClaim,
    pub(super) ops: Vec<TxnOp>,
    pub(super) done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Transactions the offset writer keeps in flight at once. etcd's WAL fsync is the serial
/// cost (about 2.4 ms each on the bench machine, with a few proposals per fsync): with fewer
/// transactions in flight each carries more commits. 2 gave 12,400-12,700 commits/s at p99
/// 17-18 ms where 4 gave 4,900-8,300 at p99 27-61 ms (docs/cluster.md, Figures).
pub(super) const COMMIT_TXNS_IN_FLIGHT: usize = 2;

/// Group commit of offsets: concurrent OffsetCommit requests share etcd transactions. It
/// takes whatever is queued, packs whole requests into transactions of at most
/// [`MAX_TXN_OPS`] puts, and keeps up to [`COMMIT_TXNS_IN_FLIGHT`] of them running; each
/// request is answered when its transaction is. Requests of one group never share the queue
/// (the group coordinator serializes a group's commits), so their order is kept.
pub(super) async fn commit_writer(
    client: Client,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<CommitJob>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(COMMIT_TXNS_IN_FLIGHT));
    let mut next: Option<CommitJob> = None;
    loop {
        let first = match next.take() {
            Some(j) => j,
            None => match queue.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut ops = first.ops.len();
        let mut jobs = vec![first];
        while let Ok(job) = queue.try_recv() {
            if ops + job.ops.len() > MAX_TXN_OPS {
                next = Some(job);
                break;
            }
            ops += job.ops.len();
            jobs.push(job);
        }
        let client = client.clone();
        tokio::spawn(async move {
            write_commits(client, jobs).await;
            drop(permit);
        });
    }
}

/// Writes a batch of commits in one transaction fenced by every claim in it; if a fence fails
/// (a slot changed hands), each request is retried alone so only the fenced ones fail.
async fn write_commits(mut client: Client, jobs: Vec<CommitJob>) {
    let txn_of = |jobs: &[&CommitJob]| {
        let mut claims: Vec<SlotClaim> = Vec::new();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for j in jobs {
            if !claims.contains(&j.claim) {
                claims.push(j.claim);
                compares.push(j.fence.clone());
            }
            ops.extend(j.ops.iter().cloned());
        }
        Txn::new().when(compares).and_then(ops)
    };
    let all: Vec<&CommitJob> = jobs.iter().collect();
    let r = client.txn(txn_of(&all)).await;
    let answers: Vec<Result<()>> = match r {
        Ok(resp) if resp.succeeded() => jobs.iter().map(|_| Ok(())).collect(),
        Ok(_) if jobs.len() == 1 => vec![Err(fenced(&jobs[0].claim))],
        Ok(_) => {
            let mut out = Vec::with_capacity(jobs.len());
            for j in &jobs {
                out.push(match client.txn(txn_of(&[j])).await {
                    Ok(resp) if resp.succeeded() => Ok(()),
                    Ok(_) => Err(fenced(&j.claim)),
                    Err(e) => Err(unavailable(e)),
                });
            }
            out
        }
        Err(e) => jobs
            .iter()
            .map(|_| Err(MetadataError::Unavailable(e.to_string())))
            .collect(),
    };
    for (j, a) in jobs.into_iter().zip(answers) {
        let _ = j.done.send(a);
    }
}
