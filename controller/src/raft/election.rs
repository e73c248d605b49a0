//! Split votes, broken with fresh randomness for each election.
//!
//! The quorum runs standard Raft (openraft's `single-term-leader`): a term has at most one
//! leader, so two candidates of one term each refuse the other. Raft relies on every election
//! drawing a new random timeout to keep such ties from repeating. Openraft 0.9 draws a node's
//! election timeout once, at start, and checks it on a fixed tick (1.5 heartbeat intervals): two
//! candidates whose timeouts round up to the same number of ticks and whose ticks are close in
//! phase time out together again after every tie, and with the third voter down the quorum never
//! elects a leader. (The seeded simulation found this: its nodes start on one virtual instant.)
//!
//! [`SplitVotes`] supplies the missing randomness. The network reports a vote refused by a peer
//! that is itself a candidate of the same term, holding no longer log than ours; after a random
//! delay shorter than any election timeout, if this node is still a candidate of that term, it
//! campaigns again. The next term outranks the peer's, so the peer grants it unless it campaigned
//! at nearly the same instant, and then the next random draws decide. A peer with a longer log is
//! left to win (openraft already delays the shorter log's next campaign), and nothing here ever
//! disturbs a node that follows or leads.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{VoteRequest, VoteResponse};
use openraft::ServerState;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{NodeId, Raft};

/// Reports ties from the network to [`SplitVotes::break_ties`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SplitVotes {
    /// The latest term in which a tie was seen (0: none yet).
    tied_term: Arc<watch::Sender<u64>>,
}

impl Default for SplitVotes {
    fn default() -> Self {
        Self { tied_term: Arc::new(watch::Sender::new(0)) }
    }
}

impl SplitVotes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at the answer `target` gave to this node's vote request.
    pub fn observe(&self, target: NodeId, request: &VoteRequest<NodeId>, response: &VoteResponse<NodeId>) {
        if is_tie(target, request, response) {
            let term = request.vote.leader_id().term;
            self.tied_term.send_if_modified(|tied| {
                let newer = term > *tied;
                if newer {
                    *tied = term;
                }
                newer
            });
        }
    }

    /// Runs until `shutdown`: after each reported tie, waits a random time in `delays` and, when
    /// this node is still a candidate of the tied term, campaigns again. `delays` should end well
    /// before the shortest election timeout, so that the campaign comes before openraft's own.
    pub async fn break_ties(self, raft: Raft, delays: Range<Duration>, shutdown: CancellationToken) {
        let mut ties = self.tied_term.subscribe();
        // The network's clones keep the sender; once Raft drops them, `changed` ends the loop.
        drop(self);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = ties.changed() => if changed.is_err() { return },
            }
            let term = *ties.borrow_and_update();
            let delay = if delays.is_empty() { delays.start } else { rand::thread_rng().gen_range(delays.clone()) };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            let still_tied = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow();
                metrics.state == ServerState::Candidate && metrics.current_term == term
            };
            if still_tied {
                tracing::info!(term, "split vote: campaigning again after {delay:?}");
                if raft.trigger().elect().await.is_err() {
                    return;
                }
            }
        }
    }

    /// The delays [`break_ties`](Self::break_ties) draws from for a shortest election timeout of
    /// `election_timeout_min`: from a tenth to three quarters of it.
    pub fn delays_for(election_timeout_min: Duration) -> Range<Duration> {
        election_timeout_min / 10..election_timeout_min * 3 / 4
    }
}

/// A refusal by a peer that campaigns in our term itself (its vote is its own, not yet granted by
/// a quorum) and whose log is no longer than ours.
fn is_tie(target: NodeId, request: &VoteRequest<NodeId>, response: &VoteResponse<NodeId>) -> bool {
    let theirs = response.vote.leader_id();
    !response.vote_granted
        && !response.vote.is_committed()
        && theirs.term == request.vote.leader_id().term
        && theirs.voted_for() == Some(target)
        && response.last_log_id <= request.last_log_id
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, Vote};

    use super::*;

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 0), index))
    }

    fn request(term: u64, me: NodeId, last: Option<LogId<NodeId>>) -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(term, me), last)
    }

    fn response(vote: Vote<NodeId>, granted: bool, last: Option<LogId<NodeId>>) -> VoteResponse<NodeId> {
        VoteResponse::new(vote, last, granted)
    }

    #[test]
    fn only_a_same_term_candidate_with_no_longer_log_is_a_tie() {
        let mine = request(5, 1, log(2, 10));
        // Node 2 campaigns in term 5 too, same log: a tie.
        assert!(is_tie(2, &mine, &response(Vote::new(5, 2), false, log(2, 10))));
        // ... or a shorter log (it would lose to us anyway, but may be the only other voter).
        assert!(is_tie(2, &mine, &response(Vote::new(5, 2), false, log(2, 9))));
        // Granted.
        assert!(!is_tie(2, &mine, &response(Vote::new(5, 1), true, log(2, 10))));
        // Node 2 has a longer log: it should win; leave openraft's back-off alone.
        assert!(!is_tie(2, &mine, &response(Vote::new(5, 2), false, log(2, 11))));
        assert!(!is_tie(2, &mine, &response(Vote::new(5, 2), false, log(3, 1))));
        // Node 2 voted for node 3 in term 5: node 3 may be winning, do not disturb it.
        assert!(!is_tie(2, &mine, &response(Vote::new(5, 3), false, log(2, 10))));
        // Node 2 follows an elected leader, or is in a later term.
        assert!(!is_tie(2, &mine, &response(Vote::new_committed(5, 3), false, log(2, 10))));
        assert!(!is_tie(2, &mine, &response(Vote::new(6, 2), false, log(2, 10))));
    }

    #[test]
    fn ties_are_reported_once_per_term_and_only_forward() {
        let votes = SplitVotes::new();
        let mut ties = votes.tied_term.subscribe();
        votes.observe(2, &request(5, 1, None), &response(Vote::new(5, 2), false, None));
        assert!(ties.has_changed().unwrap());
        assert_eq!(*ties.borrow_and_update(), 5);
        votes.observe(3, &request(5, 1, None), &response(Vote::new(5, 3), false, None));
        votes.observe(2, &request(4, 1, None), &response(Vote::new(4, 2), false, None));
        assert!(!ties.has_changed().unwrap());
        votes.observe(2, &request(6, 1, None), &response(Vote::new(6, 2), false, None));
        assert_eq!(*ties.borrow_and_update(), 6);
    }
}
