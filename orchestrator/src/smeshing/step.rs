//! What the smeshing driver did, or waits for, for one identity at a pass.

/// What one pass did, or waits for, for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not smeshing yet, and why (still initializing, no commitment ATX, no coinbase...).
    NotReady(String),
    /// The initial PoST is asked of the fleet, or is being proved.
    WaitingForInitialPost,
    /// The next cycle's registration opens at `register_at_ms` (node time).
    WaitingToRegister { publish_epoch: u32, register_at_ms: u64 },
    /// Registered with `accepted` of the node's PoETs.
    Registered { publish_epoch: u32, accepted: usize },
    /// The registration window closed before any PoET accepted: the next round is next.
    RegistrationMissed { publish_epoch: u32 },
    /// The PoET round runs until `round_end_ms` (node time).
    WaitingForRound { publish_epoch: u32, round_end_ms: u64 },
    /// The PoST over the PoET proof is asked of the fleet.
    ProvingRequested { publish_epoch: u32 },
    /// The fleet is proving.
    WaitingForProof { publish_epoch: u32 },
    /// The proof is ready; the publish epoch begins at `not_before_ms` (node time).
    WaitingToPublish { publish_epoch: u32, not_before_ms: u64 },
    /// The ATX was signed and submitted; `accepted` is the node's verdict.
    Published {
        publish_epoch: u32,
        atx_id: [u8; 32],
        accepted: bool,
        reason: Option<String>,
    },
    /// The cycle could not be finished (the deadline passed, no PoET proof, the safety database
    /// refused); the next cycle starts over.
    Abandoned { publish_epoch: u32, reason: String },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::NotReady(why) => write!(f, "not smeshing: {why}"),
            Step::WaitingForInitialPost => write!(f, "proving the initial PoST"),
            Step::WaitingToRegister { publish_epoch, .. } => {
                write!(
                    f,
                    "epoch {publish_epoch}: waiting for the PoET registration window"
                )
            }
            Step::Registered {
                publish_epoch,
                accepted,
            } => {
                write!(f, "epoch {publish_epoch}: registered with {accepted} PoET(s)")
            }
            Step::RegistrationMissed { publish_epoch } => {
                write!(f, "epoch {publish_epoch}: registration window missed, next round")
            }
            Step::WaitingForRound { publish_epoch, .. } => {
                write!(f, "epoch {publish_epoch}: waiting for the PoET round to end")
            }
            Step::ProvingRequested { publish_epoch } | Step::WaitingForProof { publish_epoch } => {
                write!(f, "epoch {publish_epoch}: proving")
            }
            Step::WaitingToPublish { publish_epoch, .. } => {
                write!(
                    f,
                    "epoch {publish_epoch}: proof ready, waiting for the publish epoch"
                )
            }
            Step::Published {
                publish_epoch,
                atx_id,
                accepted,
                reason,
            } => match (accepted, reason) {
                (true, _) => write!(
                    f,
                    "epoch {publish_epoch}: ATX {} published",
                    hex::encode(&atx_id[..8])
                ),
                (false, r) => write!(
                    f,
                    "epoch {publish_epoch}: ATX {} rejected by the node: {}",
                    hex::encode(&atx_id[..8]),
                    r.as_deref().unwrap_or("no reason given")
                ),
            },
            Step::Abandoned {
                publish_epoch,
                reason,
            } => {
                write!(f, "epoch {publish_epoch}: cycle abandoned: {reason}")
            }
        }
    }
}
