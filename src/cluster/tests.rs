//! The controller's election rule ([`PartitionState::elect`]), operators' elections and
//! reassignments (KIP-455).

use super::{ElectionRefused, PartitionState, ReassignmentRefused};
use uuid::Uuid;

fn state(leader: i32, epoch: i32, isr: &[i32], replicas: &[i32]) -> PartitionState {
    PartitionState {
        topic_id: Uuid::nil(),
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
        replicas: replicas.to_vec(),
        adding: vec![],
        removing: vec![],
    }
}

#[test]
fn a_live_leader_is_kept_and_gone_followers_leave_the_isr() {
    let s = state(1, 3, &[1, 2], &[1, 2, 3]);
    assert_eq!(s.elect(&|_| true, false), None);
    // 3 is out of the ISR already: nothing to change.
    assert_eq!(s.elect(&|b| b != 3, false), None);
    // 2 is gone: out of the ISR, same leader and epoch.
    assert_eq!(
        s.elect(&|b| b == 1, true).unwrap(),
        state(1, 3, &[1], &[1, 2, 3])
    );
}

#[test]
fn a_gone_leader_is_replaced_by_the_first_live_in_sync_replica() {
    let s = state(1, 3, &[1, 3, 2], &[1, 2, 3]);
    // Replica order decides among the live in-sync ones; the dead leader leaves the ISR.
    let next = s.elect(&|b| b != 1, false).unwrap();
    assert_eq!(next, state(2, 4, &[3, 2], &[1, 2, 3]));
}

#[test]
fn the_last_replica_gone_leaves_no_leader_and_keeps_the_isr() {
    let s = state(1, 0, &[1], &[1]);
    let offline = s.elect(&|_| false, false).unwrap();
    assert_eq!(offline, state(-1, 1, &[1], &[1]));
    // Nothing changes until it returns.
    assert_eq!(offline.elect(&|_| false, false), None);
    assert_eq!(offline.elect(&|b| b == 2, false), None);
    // Back: elected again, with a new epoch.
    assert_eq!(
        offline.elect(&|b| b == 1, false).unwrap(),
        state(1, 2, &[1], &[1])
    );
}

#[test]
fn out_of_sync_replicas_are_elected_only_when_unclean_is_allowed() {
    let s = state(-1, 5, &[1], &[1, 2]);
    assert_eq!(s.elect(&|b| b == 2, false), None);
    assert_eq!(
        s.elect(&|b| b == 2, true).unwrap(),
        state(2, 6, &[2], &[1, 2])
    );
}

#[test]
fn the_initial_state_is_led_by_the_first_replica() {
    let s = PartitionState::initial(Uuid::nil(), &[3, 1]);
    assert_eq!(s, state(3, 0, &[3, 1], &[3, 1]));
    assert_eq!(PartitionState::initial(Uuid::nil(), &[]).leader, -1);
}

#[test]
fn a_reassignment_adds_first_and_removes_when_the_added_are_in_sync() {
    let all = |_| true;
    let s = state(1, 4, &[1, 2, 3], &[1, 2, 3]);
    let r = s.reassign(&[4, 2, 3], &all).unwrap();
    assert_eq!(r.replicas, vec![4, 2, 3, 1]);
    assert_eq!(r.adding, vec![4]);
    assert_eq!(r.removing, vec![1]);
    assert_eq!(
        (r.leader, r.leader_epoch),
        (1, 4),
        "the leader stays while adding"
    );
    assert_eq!(r.original_replicas(), vec![2, 3, 1]);
    assert_eq!(r.target_replicas(), vec![4, 2, 3]);
    // 4 not in sync yet: not complete.
    assert_eq!(r.complete_reassignment(&all), None);
    let mut synced = r.clone();
    synced.isr = vec![1, 2, 3, 4];
    let done = synced.complete_reassignment(&all).unwrap();
    assert_eq!(done.replicas, vec![4, 2, 3]);
    assert_eq!(done.isr, vec![2, 3, 4]);
    assert!(!done.reassigning());
    // The removed leader is replaced by the first live in-sync target replica.
    assert_eq!((done.leader, done.leader_epoch), (4, 5));
    let not_4 = |b| b != 4;
    assert_eq!(synced.complete_reassignment(&not_4).unwrap().leader, 2);
}

#[test]
fn a_reassignment_is_refused_or_cancelled_as_kafka_does() {
    let s = state(1, 0, &[1, 2], &[1, 2]);
    let all = |_| true;
    assert!(matches!(
        s.reassign(&[], &all),
        Err(ReassignmentRefused::Invalid(_))
    ));
    assert!(matches!(
        s.reassign(&[2, 2], &all),
        Err(ReassignmentRefused::Invalid(_))
    ));
    assert!(matches!(
        s.reassign(&[2, 9], &|b| b != 9),
        Err(ReassignmentRefused::Invalid(_))
    ));
    assert_eq!(
        s.cancel_reassignment(&all),
        Err(ReassignmentRefused::NoneInProgress)
    );
    // Shrinking to a subset completes at once (nothing to add).
    let r = s.reassign(&[2], &all).unwrap();
    assert_eq!(r.complete_reassignment(&all).unwrap().replicas, vec![2]);
    // Cancelling goes back to the original replicas, the added ones out of the ISR.
    let mut r = s.reassign(&[3, 2], &all).unwrap();
    r.isr = vec![1, 2, 3];
    let c = r.cancel_reassignment(&all).unwrap();
    assert_eq!(
        (c.replicas.clone(), c.isr.clone()),
        (vec![2, 1], vec![1, 2])
    );
    assert!(!c.reassigning());
    assert_eq!(c.leader_epoch, 0);
    // A replacing reassignment starts from the original replicas.
    let again = r.reassign(&[1, 4], &all).unwrap();
    assert_eq!(again.replicas, vec![1, 4, 2]);
    assert_eq!(
        (again.adding.clone(), again.removing.clone()),
        (vec![4], vec![2])
    );
    assert_eq!(
        again.isr,
        vec![1, 2],
        "3, never in the original, leaves the ISR"
    );
}

#[test]
fn preferred_and_unclean_elections() {
    let all = |_| true;
    let s = state(2, 7, &[1, 2], &[1, 2, 3]);
    let p = s.elect_preferred(&all).unwrap();
    assert_eq!((p.leader, p.leader_epoch), (1, 8));
    assert_eq!(p.elect_preferred(&all), Err(ElectionRefused::NotNeeded));
    assert_eq!(
        s.elect_preferred(&|b| b != 1),
        Err(ElectionRefused::PreferredNotAvailable)
    );
    let out = state(2, 7, &[2], &[1, 2, 3]);
    assert_eq!(
        out.elect_preferred(&all),
        Err(ElectionRefused::PreferredNotAvailable)
    );
    // Unclean: only without a live leader; an in-sync replica first, else any live one.
    assert_eq!(s.elect_unclean(&all), Err(ElectionRefused::NotNeeded));
    let dead = |b| b == 3;
    let u = out.elect_unclean(&dead).unwrap();
    assert_eq!((u.leader, u.isr.clone(), u.leader_epoch), (3, vec![3], 8));
    assert_eq!(
        out.elect_unclean(&|_| false),
        Err(ElectionRefused::NoEligibleLeader)
    );
}
