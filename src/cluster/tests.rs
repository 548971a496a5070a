//! The controller's election rule ([`PartitionState::elect`]).

use super::PartitionState;
use uuid::Uuid;

fn state(leader: i32, epoch: i32, isr: &[i32], replicas: &[i32]) -> PartitionState {
    PartitionState {
        topic_id: Uuid::nil(),
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
        replicas: replicas.to_vec(),
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
