use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

const GENESIS_ID: [u8; 20] = [0x5a; 20];

fn genesis() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn at(secs: u64) -> SystemTime {
    genesis() + Duration::from_secs(secs)
}

fn at_ms(ms: u64) -> SystemTime {
    genesis() + Duration::from_millis(ms)
}

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn server(pace: u64) -> PoetServer {
    PoetServer::new(PoetConfig::devnet(genesis(), GENESIS_ID, pace)).expect("valid config")
}

fn reg(k: u8, challenge: u8) -> Registration {
    Registration::signed(&key(k), &GENESIS_ID, [challenge; 32], None)
}

#[test]
fn schedule_at_the_bounds() {
    let s = PoetConfig::devnet(genesis(), GENESIS_ID, 1).schedule;
    assert_eq!(s.round_start(0), Some(at(40)));
    assert_eq!(s.round_end(0), Some(at(90)));
    assert_eq!(s.round_start(1), Some(at(100)));
    assert_eq!(s.round_end(1), Some(at(150)));
    assert_eq!(s.run_duration(), Duration::from_secs(50));
    assert_eq!(s.open_round(genesis() - Duration::from_secs(5)), 0);
    assert_eq!(s.open_round(genesis()), 0);
    assert_eq!(s.open_round(at_ms(39_999)), 0);
    assert_eq!(s.open_round(at(40)), 1, "round 0 starts: round 1 opens");
    assert_eq!(s.open_round(at_ms(99_999)), 1);
    assert_eq!(s.open_round(at(100)), 2);
    assert_eq!(s.open_round(at(40 + 60 * 1000)), 1001);
    assert_eq!(s.round_start(u64::MAX), None, "overflow is reported, not a panic");
    // Node-side anchoring: the round starting in epoch e ends at epoch_start(e+1) + 40 − 10.
    for e in 0..5u64 {
        assert_eq!(s.round_end(e), Some(at(60 * (e + 1) + 30)));
    }
}

#[test]
fn config_is_checked() {
    let mut c = PoetConfig::devnet(genesis(), GENESIS_ID, 10);
    c.schedule.cycle_gap = c.schedule.epoch_duration;
    assert!(matches!(PoetServer::new(c.clone()), Err(PoetError::Config(_))));
    c = PoetConfig::devnet(genesis(), GENESIS_ID, 0);
    assert!(matches!(PoetServer::new(c.clone()), Err(PoetError::Config(_))));
    c = PoetConfig::devnet(genesis(), GENESIS_ID, 10);
    c.t = 151;
    assert!(matches!(PoetServer::new(c), Err(PoetError::Config(_))));
}

#[test]
fn registration_rules() {
    let mut s = server(10);
    let ok = s.register(at(1), &reg(1, 0xaa)).expect("registers");
    assert_eq!(
        ok,
        Registered {
            round: 0,
            round_end: at(90)
        }
    );
    // Same challenge again: a no-op success.
    assert_eq!(s.register(at(2), &reg(1, 0xaa)), Ok(ok));
    assert_eq!(s.status(0), RoundStatus::Open { members: 1 });
    // Another challenge for the same round: conflict.
    assert_eq!(
        s.register(at(3), &reg(1, 0xbb)),
        Err(RegisterError::Conflict {
            round: 0,
            node_id: key(1).verifying_key().to_bytes()
        })
    );
    // ... but fine for the next round.
    assert_eq!(s.register(at(41), &reg(1, 0xbb)).map(|r| r.round), Ok(1));

    // Bad signatures: a flipped bit, another genesis ID, another key's signature.
    let mut bad = reg(2, 0xcc);
    bad.signature[10] ^= 1;
    let node_id = bad.node_id;
    assert_eq!(
        s.register(at(4), &bad),
        Err(RegisterError::BadSignature { node_id })
    );
    let other_net = Registration::signed(&key(2), &[0u8; 20], [0xcc; 32], None);
    assert_eq!(
        s.register(at(4), &other_net),
        Err(RegisterError::BadSignature { node_id })
    );
    let mut stolen = reg(3, 0xcc);
    stolen.node_id = node_id;
    assert_eq!(
        s.register(at(4), &stolen),
        Err(RegisterError::BadSignature { node_id })
    );
    let mut changed = reg(2, 0xcc);
    changed.challenge[0] ^= 1;
    assert_eq!(
        s.register(at(4), &changed),
        Err(RegisterError::BadSignature { node_id })
    );

    // A node ID that is no curve point.
    let not_a_key = (0u8..=255)
        .map(|i| [i; 32])
        .find(|b| VerifyingKey::from_bytes(b).is_err())
        .expect("some byte pattern is no point");
    let mut r = reg(4, 0xdd);
    r.node_id = not_a_key;
    assert_eq!(
        s.register(at(4), &r),
        Err(RegisterError::BadNodeId { node_id: not_a_key })
    );
}

#[test]
fn deadlines() {
    let mut s = server(10);
    let mut r = reg(1, 0xaa);
    r.deadline = Some(at(89));
    assert_eq!(
        s.register(at(1), &r),
        Err(RegisterError::TooLate {
            round: 0,
            round_end: at(90),
            deadline: at(89)
        })
    );
    r.deadline = Some(at(90));
    assert_eq!(
        s.register(at(1), &r).map(|r| r.round),
        Ok(0),
        "ending at the deadline is in time"
    );
    // The signature is checked first.
    r.signature[0] ^= 1;
    r.deadline = Some(at(0));
    assert!(matches!(
        s.register(at(1), &r),
        Err(RegisterError::BadSignature { .. })
    ));
}

#[test]
fn a_started_round_takes_no_registrations() {
    let mut s = server(10);
    s.register(at(1), &reg(1, 1)).expect("registers");
    s.advance(at(40)).expect("advances");
    assert_eq!(
        s.register(at(39), &reg(2, 2)),
        Err(RegisterError::RoundStarted { round: 0 })
    );
    assert_eq!(s.register(at(40), &reg(2, 2)).map(|r| r.round), Ok(1));
}

#[test]
fn a_round_runs_paced_and_proves() {
    // 4 leaves/s over a 50 s round: 200 leaves.
    let mut s = server(4);
    for (k, c) in [(3u8, 0x33u8), (1, 0x11), (2, 0x22)] {
        s.register(at(5), &reg(k, c)).expect("registers");
    }
    let mut by_id: Vec<([u8; 32], [u8; 32])> = [(3u8, 0x33u8), (1, 0x11), (2, 0x22)]
        .map(|(k, c)| (key(k).verifying_key().to_bytes(), [c; 32]))
        .into();
    by_id.sort();
    let members: Vec<[u8; 32]> = by_id.iter().map(|(_, c)| *c).collect();
    let statement = membership_root(&members).expect("root");

    assert_eq!(s.advance(at(39)).expect("ok"), vec![]);
    assert_eq!(
        s.advance(at(40)).expect("ok"),
        vec![RoundEvent::Started {
            round: 0,
            members: 3,
            statement
        }]
    );
    assert_eq!(
        s.status(0),
        RoundStatus::Running {
            members: 3,
            leaves: 0
        }
    );
    assert_eq!(s.proof(0), Err(PoetError::NotFinished { round: 0 }));
    s.advance(at_ms(60_500)).expect("ok");
    assert_eq!(
        s.status(0),
        RoundStatus::Running {
            members: 3,
            leaves: 82
        }
    );

    // A bounded step stops early and says so.
    let step = s.step(at(90), 10).expect("ok");
    assert_eq!(
        step,
        Step {
            events: vec![],
            caught_up: false
        }
    );
    assert_eq!(
        s.status(0),
        RoundStatus::Running {
            members: 3,
            leaves: 92
        }
    );

    let events = s.advance(at(95)).expect("ok");
    assert_eq!(
        events,
        vec![RoundEvent::Finished {
            round: 0,
            leaf_count: 200
        }]
    );
    let p = s.proof(0).expect("finished");
    assert_eq!(p.members, members, "ordered by node id");
    assert_eq!(p.statement, statement);
    assert_eq!(p.leaf_count(), 200);
    p.proof
        .verify(&statement, crate::poet::T)
        .expect("the proof verifies");
    for c in &members {
        let (i, path) = p.membership(c).expect("member");
        assert!(crate::poet::verify_membership(c, i, &path, &statement));
    }
    assert_eq!(p.membership(&[0; 32]), None);
    assert_eq!(
        s.status(0),
        RoundStatus::Done {
            members: 3,
            leaf_count: 200
        }
    );
}

#[test]
fn a_slow_pace_still_reaches_t_and_empty_rounds_are_skipped() {
    // 1 leaf/s: 50 leaves by the end, topped up to T = 150.
    let mut s = server(1);
    assert_eq!(s.register(at(50), &reg(1, 1)).map(|r| r.round), Ok(1));
    let events = s.advance(at(400)).expect("ok");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1],
        RoundEvent::Finished {
            round: 1,
            leaf_count: 150
        }
    );
    let p = s.proof(1).expect("finished");
    assert_eq!(p.statement, [1; 32], "a single member is the statement");
    p.proof.verify(&p.statement, 150).expect("verifies");
    assert_eq!(s.proof(0), Err(PoetError::NoMembers { round: 0 }));
    assert_eq!(s.status(0), RoundStatus::NoMembers);
    assert_eq!(s.proof(9), Err(PoetError::NotFinished { round: 9 }));
    s.forget_rounds_before(2);
    assert_eq!(s.proof(1), Err(PoetError::Forgotten { round: 1 }));
}

#[test]
fn the_thread_drives_the_server_to_the_clock() {
    let server = Arc::new(Mutex::new(server(3)));
    lock(&server).register(at(1), &reg(1, 7)).expect("registers");
    let now_ms = Arc::new(AtomicU64::new(1_000));
    let clock_ms = Arc::clone(&now_ms);
    let thread = PoetThread::spawn_with_clock(Arc::clone(&server), Duration::from_millis(2), move || {
        at_ms(clock_ms.load(Ordering::SeqCst))
    })
    .expect("spawns");
    now_ms.store(95_000, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lock(thread.server()).proof(0).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the thread never finished round 0"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(lock(&server).proof(0).map(|p| p.leaf_count()), Ok(150));
    thread.shutdown().expect("clean stop");
}
