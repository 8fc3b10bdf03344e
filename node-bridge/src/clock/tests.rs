use proptest::prelude::*;

use super::*;

const S: u64 = 1_000;
const H: u64 = 3_600 * S;
const G: u64 = 1_700_000_000_000; // an arbitrary devnet genesis

fn devnet() -> Clock {
    Clock::new(ClockParams::devnet().with_genesis_ms(G)).expect("devnet preset is valid")
}

fn mainnet() -> Clock {
    Clock::new(ClockParams::mainnet()).expect("mainnet preset is valid")
}

#[test]
fn presets_validate() {
    assert_eq!(ClockParams::devnet().validate(), Ok(()));
    assert_eq!(ClockParams::mainnet().validate(), Ok(()));
    assert_eq!(devnet().epoch_duration_ms(), 60 * S);
    assert_eq!(mainnet().epoch_duration_ms(), 336 * H);
}

#[test]
fn invalid_params_are_named() {
    let base = ClockParams::devnet();
    let cases = [
        (
            ClockParams {
                layer_duration_ms: 0,
                ..base
            },
            ClockParamsError::ZeroLayerDuration,
        ),
        (
            ClockParams {
                layers_per_epoch: 0,
                ..base
            },
            ClockParamsError::ZeroLayersPerEpoch,
        ),
        (
            ClockParams {
                layers_per_epoch: u32::MAX / 2 + 1,
                ..base
            },
            ClockParamsError::TooManyLayersPerEpoch {
                layers_per_epoch: u32::MAX / 2 + 1,
            },
        ),
        (
            ClockParams {
                layer_duration_ms: u64::MAX / 2,
                ..base
            },
            ClockParamsError::EpochDurationOverflow {
                layer_duration_ms: u64::MAX / 2,
                layers_per_epoch: 12,
            },
        ),
        (
            ClockParams {
                poet_phase_shift_ms: 60 * S,
                ..base
            },
            ClockParamsError::PhaseShiftNotBelowEpoch {
                phase_shift_ms: 60 * S,
                epoch_ms: 60 * S,
            },
        ),
        (
            ClockParams {
                poet_cycle_gap_ms: 60 * S,
                ..base
            },
            ClockParamsError::CycleGapNotBelowEpoch {
                cycle_gap_ms: 60 * S,
                epoch_ms: 60 * S,
            },
        ),
        (
            ClockParams {
                grace_period_ms: 41 * S,
                ..base
            },
            ClockParamsError::GraceExceedsPhaseShift {
                grace_period_ms: 41 * S,
                phase_shift_ms: 40 * S,
            },
        ),
        (
            ClockParams {
                positioning_atx_timeout_ms: 5 * S,
                ..base
            },
            ClockParamsError::PositioningTimeoutExceedsGrace {
                positioning_atx_timeout_ms: 5 * S,
                grace_period_ms: 4 * S,
            },
        ),
        (
            ClockParams {
                genesis_ms: u64::MAX - 1,
                ..base
            },
            ClockParamsError::GenesisTooLate {
                genesis_ms: u64::MAX - 1,
            },
        ),
    ];
    for (params, want) in cases {
        assert_eq!(Clock::new(params), Err(want));
    }
}

#[test]
fn devnet_layers_and_epochs_at_boundaries() {
    let c = devnet();
    assert_eq!(c.layer_at(G), Ok(0));
    assert_eq!(c.layer_at(G + 5 * S - 1), Ok(0));
    assert_eq!(c.layer_at(G + 5 * S), Ok(1));
    assert_eq!(
        c.layer_at(G - 1),
        Err(ClockError::BeforeGenesis {
            t_ms: G - 1,
            genesis_ms: G
        })
    );
    assert_eq!(c.layer_start(23), Ok(G + 115 * S));
    assert_eq!(c.layer_end(23), Ok(G + 120 * S));
    assert_eq!(c.epoch_of_layer(11), 0);
    assert_eq!(c.epoch_of_layer(12), 1);
    for e in [0u32, 1, 2, 7, 1000] {
        assert_eq!(c.epoch_start(e), Ok(G + 60 * S * u64::from(e)));
        assert_eq!(c.epoch_end(e), Ok(G + 60 * S * (u64::from(e) + 1)));
        assert_eq!(c.first_layer(e), Ok(12 * e));
        assert_eq!(c.last_layer(e), Ok(12 * e + 11));
        assert_eq!(c.epoch_at(G + 60 * S * u64::from(e)), Ok(e));
        assert_eq!(c.epoch_at(G + 60 * S * u64::from(e + 1) - 1), Ok(e));
    }
    // §6.3: effective genesis is layer 23; the first rewards come at t ≈ 120 s (layer 24).
    assert_eq!(c.effective_genesis_layer(), 23);
    assert_eq!(c.layer_start(c.effective_genesis_layer() + 1), Ok(G + 120 * S));
}

#[test]
fn devnet_poet_rounds() {
    let c = devnet();
    assert_eq!(c.round_duration_ms(), 50 * S);
    for k in [0u32, 1, 2, 5, 999] {
        let start = G + 40 * S + 60 * S * u64::from(k);
        assert_eq!(c.round_start(k), Ok(start));
        assert_eq!(c.round_end(k), Ok(start + 50 * S));
        // Epoch-anchored form: the round starting in epoch e ends at epoch_start(e+1) + 40 s − 10 s.
        assert_eq!(c.round_in_epoch(k), k);
        assert_eq!(c.round_start(k), c.epoch_start(k).map(|s| s + 40 * S));
        assert_eq!(c.round_end(k), c.epoch_start(k + 1).map(|s| s + 30 * S));
        assert_eq!(c.open_round(start - 1), Ok(k));
        assert_eq!(c.open_round(start), Ok(k + 1));
    }
    assert_eq!(c.open_round(0), Ok(0));
    assert_eq!(c.open_round(G), Ok(0));
    assert_eq!(c.round_registration_opens(0), Ok(G));
    assert_eq!(c.round_registration_opens(3), c.round_start(2));
    // Round 0 ends at 90 s, inside epoch 1 (§6.3).
    assert_eq!(c.round_end(0), Ok(G + 90 * S));
    assert_eq!(c.proof_fetch_jitter_ms(), (2, 4));
}

#[test]
fn mainnet_schedule() {
    let c = mainnet();
    let g = MAINNET_GENESIS_MS;
    assert_eq!(c.effective_genesis_layer(), 8063);
    assert_eq!(c.layer_start(1), Ok(g + 300 * S));
    assert_eq!(c.epoch_start(1), Ok(g + 14 * 24 * H));
    assert_eq!(c.round_duration_ms(), 324 * H);
    assert_eq!(c.round_start(0), Ok(g + 240 * H));
    assert_eq!(c.round_end(0), Ok(g + 564 * H));
    // Round E ends at S(E+1) + 9.5 d (node.md §2.2).
    assert_eq!(c.round_end(7), c.epoch_start(8).map(|s| s + 228 * H));
    // node.md: the cycle gap falls on 2025-02-16 20:00 UTC → 2025-02-17 08:00 UTC.
    let sunday_20h = 1_739_736_000_000;
    assert_eq!(c.round_end(40), Ok(sunday_20h));
    assert_eq!(c.round_start(41), Ok(sunday_20h + 12 * H));
    let (lo, hi) = c.proof_fetch_jitter_ms();
    assert_eq!((lo, hi), (8_640, 17_280));
}

#[test]
fn overflow_is_an_error() {
    let c = mainnet();
    assert!(matches!(
        c.first_layer(u32::MAX),
        Err(ClockError::EpochLayersOverflow { .. })
    ));
    assert!(matches!(
        c.layer_at(u64::MAX),
        Err(ClockError::LayerOverflow { .. })
    ));
    let wide = Clock::new(ClockParams {
        layer_duration_ms: 1,
        layers_per_epoch: 1,
        ..ClockParams::devnet()
    });
    assert!(matches!(
        wide,
        Err(ClockParamsError::PhaseShiftNotBelowEpoch { .. })
    ));
    let long = Clock::new(ClockParams {
        layer_duration_ms: u64::MAX / 8192,
        layers_per_epoch: 4096,
        poet_phase_shift_ms: 0,
        poet_cycle_gap_ms: 0,
        grace_period_ms: 0,
        positioning_atx_timeout_ms: 0,
        genesis_ms: 0,
    })
    .expect("valid");
    assert!(matches!(
        long.epoch_start(3),
        Err(ClockError::TimeOverflow { .. })
    ));
    assert!(matches!(long.round_end(2), Err(ClockError::TimeOverflow { .. })));
    assert!(matches!(
        long.builder_timeline(0, Some(5)),
        Err(ClockError::TimeOverflow { .. })
    ));
}

#[test]
fn builder_first_cycle_from_genesis() {
    let c = devnet();
    let t = c.builder_timeline(G, None).expect("timeline");
    assert_eq!(
        t,
        BuilderTimeline {
            poet_round: 0,
            publish_epoch: 1,
            target_epoch: 2,
            register_at_ms: G + 36 * S,
            positioning_deadline_ms: G + 39 * S,
            registration_deadline_ms: G + 40 * S,
            round_end_ms: G + 90 * S,
            proof_deadline_ms: G + 110 * S,
            publish_not_before_ms: G + 60 * S,
            publish_deadline_ms: G + 120 * S,
        }
    );
    // Before genesis the node prepares for round 0 as well.
    assert_eq!(c.builder_timeline(G - 10 * S, None), Ok(t));
    // Inside the grace window: same round, register at once.
    let late = c.builder_timeline(G + 39_999, None).expect("timeline");
    assert_eq!(late, t);
    assert!(late.register_at_ms < G + 39_999 && !late.registration_missed(G + 39_999));
}

#[test]
fn builder_missed_window_moves_to_next_round() {
    let c = devnet();
    let t = c.builder_timeline(G + 40 * S, None).expect("timeline");
    assert_eq!((t.poet_round, t.publish_epoch, t.target_epoch), (1, 2, 3));
    assert_eq!(t.register_at_ms, G + 96 * S);
    assert_eq!(t.registration_deadline_ms, G + 100 * S);
    assert_eq!(t.round_end_ms, G + 150 * S);
    assert_eq!(t.proof_deadline_ms, G + 170 * S);
    assert_eq!(t.publish_deadline_ms, G + 180 * S);
}

#[test]
fn builder_with_previous_atx() {
    let c = devnet();
    // On time: ATX published in epoch 1 at 92 s, before round 1 starts (100 s).
    let t = c.builder_timeline(G + 92 * S, Some(1)).expect("timeline");
    assert_eq!((t.poet_round, t.publish_epoch), (1, 2));
    // Late but inside the publish epoch (after round 1 started): one target epoch is lost.
    let t = c.builder_timeline(G + 105 * S, Some(1)).expect("timeline");
    assert_eq!((t.poet_round, t.publish_epoch, t.target_epoch), (2, 3, 4));
    // A previous ATX for a later publish epoch than the clock's epoch wins.
    let t = c.builder_timeline(G + 10 * S, Some(3)).expect("timeline");
    assert_eq!((t.poet_round, t.publish_epoch), (3, 4));
    assert_eq!(t.register_at_ms, G + 216 * S);
}

#[test]
fn builder_mainnet_cycle() {
    let c = mainnet();
    let g = MAINNET_GENESIS_MS;
    let e5 = c.epoch_start(5).expect("epoch start");
    let t = c.builder_timeline(e5 + 24 * H, Some(5)).expect("timeline");
    assert_eq!((t.poet_round, t.publish_epoch, t.target_epoch), (5, 6, 7));
    assert_eq!(t.register_at_ms, e5 + 239 * H);
    assert_eq!(t.positioning_deadline_ms, e5 + 239 * H + 50 * 60 * S);
    assert_eq!(t.round_end_ms, e5 + (240 + 324) * H);
    assert_eq!(t.proof_deadline_ms, e5 + 2 * 336 * H - 12 * H);
    assert_eq!(t.publish_deadline_ms, g + 7 * 336 * H);
    assert!(t.expired(t.publish_deadline_ms) && !t.expired(t.publish_deadline_ms - 1));
    assert!(t.proof_expired(t.proof_deadline_ms + 1) && !t.proof_expired(t.proof_deadline_ms));
}

fn params_strategy() -> impl Strategy<Value = ClockParams> {
    (1u64..=600_000, 1u32..=5000, 0u64..=1_000_000_000_000_000)
        .prop_flat_map(|(layer, lpe, genesis)| {
            let epoch = layer * u64::from(lpe);
            (Just(layer), Just(lpe), Just(genesis), 0..epoch, 0..epoch)
        })
        .prop_flat_map(|(layer, lpe, genesis, phase, gap)| {
            (
                Just(layer),
                Just(lpe),
                Just(genesis),
                Just(phase),
                Just(gap),
                0..=phase,
            )
        })
        .prop_map(|(layer, lpe, genesis, phase, gap, grace)| ClockParams {
            genesis_ms: genesis,
            layer_duration_ms: layer,
            layers_per_epoch: lpe,
            poet_phase_shift_ms: phase,
            poet_cycle_gap_ms: gap,
            grace_period_ms: grace,
            positioning_atx_timeout_ms: grace / 2,
        })
}

/// `offset` folded so that the layer it falls in fits a `LayerId` with room to spare (layers of
/// 1 ms and offsets of 10^13 ms would not: that overflow is tested on its own).
fn representable(params: &ClockParams, offset: u64) -> u64 {
    offset % (params.layer_duration_ms * u64::from(u32::MAX / 2))
}

proptest! {
    #[test]
    fn layer_and_epoch_round_trip(params in params_strategy(), offset in 0u64..10_000_000_000_000) {
        let c = Clock::new(params).expect("strategy yields valid params");
        let t = params.genesis_ms + representable(&params, offset);
        let layer = c.layer_at(t).expect("layer");
        prop_assert!(c.layer_start(layer).expect("start") <= t);
        prop_assert!(t < c.layer_end(layer).expect("end"));
        let epoch = c.epoch_at(t).expect("epoch");
        prop_assert_eq!(c.epoch_of_layer(layer), epoch);
        prop_assert!(c.first_layer(epoch).expect("first") <= layer);
        prop_assert!(layer <= c.last_layer(epoch).expect("last"));
        prop_assert_eq!(c.epoch_start(epoch).expect("e"), c.layer_start(c.first_layer(epoch).expect("f")).expect("l"));
    }

    #[test]
    fn open_round_is_the_next_round_to_start(params in params_strategy(), offset in 0u64..10_000_000_000_000) {
        let c = Clock::new(params).expect("valid");
        let t = params.genesis_ms + representable(&params, offset);
        let k = c.open_round(t).expect("round");
        prop_assert!(t < c.round_start(k).expect("start"));
        prop_assert!(t >= c.round_registration_opens(k).expect("opens"));
        prop_assert!(c.round_end(k).expect("end") <= c.round_start(k + 1).expect("next"));
        prop_assert_eq!(c.round_start(k).expect("s") - c.epoch_start(k).expect("e"), params.poet_phase_shift_ms);
    }

    #[test]
    fn builder_timeline_is_ordered(
        params in params_strategy(),
        offset in 0u64..10_000_000_000_000,
        prev_back in proptest::option::of(0u32..3),
    ) {
        let c = Clock::new(params).expect("valid");
        let now = params.genesis_ms + representable(&params, offset);
        let epoch = c.epoch_at(now).expect("epoch");
        let prev = prev_back.map(|b| epoch.saturating_sub(b));
        let t = c.builder_timeline(now, prev).expect("timeline");
        prop_assert!(!t.registration_missed(now));
        prop_assert!(t.register_at_ms <= t.positioning_deadline_ms);
        prop_assert!(t.positioning_deadline_ms <= t.registration_deadline_ms);
        prop_assert!(t.registration_deadline_ms < t.round_end_ms);
        prop_assert!(t.round_end_ms <= t.proof_deadline_ms);
        prop_assert!(t.publish_not_before_ms <= t.proof_deadline_ms);
        prop_assert!(t.proof_deadline_ms <= t.publish_deadline_ms);
        prop_assert_eq!(t.publish_epoch, t.poet_round + 1);
        // Never a round whose registration has closed.
        prop_assert!(t.poet_round >= c.open_round(now).expect("open"));
        // Never a round later than necessary: the previous round had already started.
        if t.poet_round > prev.unwrap_or(0).max(epoch) {
            prop_assert!(now >= c.round_start(t.poet_round - 1).expect("prev start"));
        }
    }
}

#[test]
fn timeline_of_a_publish_epoch_is_the_one_built_for_it() {
    for clock in [devnet(), mainnet()] {
        for publish_epoch in [1u32, 2, 3, 40] {
            let t = clock.timeline_for_publish_epoch(publish_epoch).expect("timeline");
            assert_eq!(t.publish_epoch, publish_epoch);
            // What a builder gets at that cycle's registration time, and anywhere in its window.
            assert_eq!(clock.builder_timeline(t.register_at_ms, None).expect("at"), t);
            assert_eq!(
                clock
                    .builder_timeline(t.registration_deadline_ms - 1, None)
                    .expect("late"),
                t
            );
        }
        assert!(clock.timeline_for_publish_epoch(0).is_err());
    }
}

#[test]
fn a_poet_of_another_phase_has_its_own_cycle() {
    let early = Clock::new(
        ClockParams::devnet()
            .with_genesis_ms(G)
            .with_poet_schedule(20 * S, 10 * S),
    )
    .expect("a 20 s phase is valid");
    let late = devnet();
    let epoch3 = late.epoch_start(3).expect("epoch 3");
    // 25 s into epoch 3, the identity's ATX of epoch 3 published: the 20 s PoET's round 3 has
    // started, so in that phase the next cycle is round 4 (publish epoch 5); the 40 s PoET's
    // round 3 still takes registrations (publish epoch 4).
    let now = epoch3 + 25 * S;
    let e = early.builder_timeline(now, Some(3)).expect("early timeline");
    let l = late.builder_timeline(now, Some(3)).expect("late timeline");
    assert_eq!((e.poet_round, e.publish_epoch), (4, 5));
    assert_eq!(e.register_at_ms, epoch3 + 60 * S + 16 * S);
    assert_eq!(e.round_end_ms, epoch3 + 120 * S + 10 * S);
    assert_eq!(e.proof_deadline_ms, epoch3 + 180 * S - 10 * S);
    assert_eq!((l.poet_round, l.publish_epoch), (3, 4));
    assert_eq!(l.registration_deadline_ms, epoch3 + 40 * S);
    assert_eq!(l.round_end_ms, epoch3 + 60 * S + 30 * S);
    // A phase shorter than the grace period cannot be registered for in time.
    assert!(matches!(
        Clock::new(ClockParams::devnet().with_poet_schedule(3 * S, 10 * S)),
        Err(ClockParamsError::GraceExceedsPhaseShift { .. })
    ));
}
