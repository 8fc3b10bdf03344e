//! Validation with real PoST data (see `testkit`): one positive initial ATX, a positive chain,
//! then every rule broken one at a time.

use super::*;
use crate::atx::testkit::{alice, bob, context, golden, Identity, MapLookup, LEAF_COUNT, PARAMS};
use crate::atx::wire::{InnerActivationTxV1, Scale};
use post::verify::VerifyError;

const TICKS: u64 = LEAF_COUNT / PARAMS.tick_size;

fn check(atx: &ActivationTxV1, lookup: &MapLookup) -> Result<ValidatedAtx, AtxError> {
    validate_atx_v1(atx, &context(), lookup)
}

/// Alice's valid initial ATX in epoch 1 with `units`, and the lookup that knows its PoET.
fn initial(units: u32) -> (ActivationTxV1, MapLookup) {
    let mut lookup = MapLookup::at(1);
    let atx = alice().seal(alice().initial(1, units), &mut lookup);
    (atx, lookup)
}

/// Alice's initial ATX changed by `edit` and sealed again (so membership and signature hold).
fn initial_with(edit: impl FnOnce(&mut InnerActivationTxV1)) -> Result<ValidatedAtx, AtxError> {
    let mut lookup = MapLookup::at(1);
    let mut inner = alice().initial(1, 1);
    edit(&mut inner);
    let atx = alice().seal(inner, &mut lookup);
    check(&atx, &lookup)
}

/// Alice: valid initial ATX (epoch 1), plus an unsealed successor for epoch 2 edited by `edit`,
/// sealed and validated against a lookup that knows the first one (edited by `world`).
fn next_with(
    edit: impl FnOnce(&mut InnerActivationTxV1, &ValidatedAtx),
    world: impl FnOnce(&mut MapLookup),
) -> Result<ValidatedAtx, AtxError> {
    let (first, mut lookup) = initial(1);
    let v1 = check(&first, &lookup).expect("first valid");
    lookup.add(v1);
    lookup.epoch = 2;
    let mut inner = alice().next(&v1, v1.id, 2, 1, None);
    edit(&mut inner, &v1);
    let atx = alice().seal(inner, &mut lookup);
    world(&mut lookup);
    check(&atx, &lookup)
}

#[test]
fn a_real_initial_atx_is_valid() {
    let (atx, lookup) = initial(2);
    let v = check(&atx, &lookup).expect("valid initial ATX");
    assert_eq!(v.id, atx.id());
    assert_eq!(v.smesher_id, alice().node_id);
    assert_eq!(v.commitment_atx_id, golden());
    assert_eq!(v.publish_epoch, 1);
    assert_eq!((v.num_units, v.effective_units), (2, 2));
    assert_eq!(v.base_height, 0);
    assert_eq!(v.ticks, TICKS);
    assert_eq!(v.weight, 2 * TICKS);
    assert_eq!(v.tick_height(), TICKS);
    assert_eq!(Some(v.vrf_nonce), atx.inner.vrf_nonce);
    // Strict PoST checks accept the prover's output too.
    let mut ctx = context();
    ctx.verify_options.strict = true;
    assert!(validate_atx_v1(&atx, &ctx, &lookup).is_ok());
    // The ATX survives its wire form.
    let back = ActivationTxV1::from_bytes(&atx.to_bytes()).expect("decode");
    assert_eq!(check(&back, &lookup).expect("valid again"), v);
}

#[test]
fn a_chain_takes_min_units_and_stacks_heights() {
    let a = alice();
    let (first, mut lookup) = initial(1);
    let v1 = check(&first, &lookup).expect("first");
    lookup.add(v1);
    lookup.epoch = 2;
    // Units grow to 2: the nonce must be valid for 2 units, so send one that is.
    let nonce = a.vrf_nonce(2);
    let second = a.seal(a.next(&v1, v1.id, 2, 2, Some(nonce)), &mut lookup);
    let v2 = check(&second, &lookup).expect("second");
    assert_eq!((v2.num_units, v2.effective_units), (2, 1));
    assert_eq!(v2.sequence, 1);
    assert_eq!(v2.commitment_atx_id, golden());
    assert_eq!(v2.base_height, TICKS);
    assert_eq!(v2.tick_height(), 2 * TICKS);
    assert_eq!(v2.weight, TICKS);
    assert_eq!(v2.vrf_nonce, nonce);
    lookup.add(v2);
    lookup.epoch = 3;
    // Third: units stay 2, nonce carried over; now effective units 2.
    let third = a.seal(a.next(&v2, v2.id, 3, 2, None), &mut lookup);
    let v3 = check(&third, &lookup).expect("third");
    assert_eq!(
        (v3.effective_units, v3.weight, v3.vrf_nonce),
        (2, 2 * TICKS, nonce)
    );
    assert_eq!(v3.base_height, 2 * TICKS);
}

#[test]
fn growing_units_rechecks_the_carried_vrf_nonce() {
    let a = alice();
    // A nonce valid for one unit but not for two.
    let weak = (0..100_000)
        .find(|&i| a.vrf_ok(i, 1) && !a.vrf_ok(i, 2))
        .expect("a one-unit-only nonce");
    let mut lookup = MapLookup::at(1);
    let mut inner = a.initial(1, 1);
    inner.vrf_nonce = Some(weak);
    let first = a.seal(inner, &mut lookup);
    let v1 = check(&first, &lookup).expect("first");
    assert_eq!(v1.vrf_nonce, weak);
    lookup.add(v1);
    lookup.epoch = 2;
    let grown = a.seal(a.next(&v1, v1.id, 2, 2, None), &mut lookup);
    assert!(matches!(
        check(&grown, &lookup),
        Err(AtxError::InvalidVrfNonce(_))
    ));
    // Same units: no recheck needed, valid.
    let same = a.seal(a.next(&v1, v1.id, 2, 1, None), &mut lookup);
    assert!(check(&same, &lookup).is_ok());
}

#[test]
fn signature_rules() {
    let (atx, lookup) = initial(1);
    let mut bad = atx.clone();
    bad.signature[10] ^= 1;
    assert!(matches!(
        check(&bad, &lookup),
        Err(AtxError::InvalidSignature { .. })
    ));
    let mut other_signer = atx.clone();
    other_signer.smesher_id = bob().node_id;
    assert!(matches!(
        check(&other_signer, &lookup),
        Err(AtxError::InvalidSignature { .. })
    ));
    let mut ctx = context();
    ctx.genesis_id = [0; 20];
    assert!(matches!(
        validate_atx_v1(&atx, &ctx, &lookup),
        Err(AtxError::InvalidSignature { .. })
    ));
}

#[test]
fn syntactic_rules() {
    let e = initial_with(|i| i.nipost = None);
    assert!(matches!(e, Err(AtxError::MissingNiPost)), "{e:?}");
    let e = initial_with(|i| i.nipost.as_mut().expect("n").post = None);
    assert!(matches!(e, Err(AtxError::MissingNiPostPost)), "{e:?}");
    let e = initial_with(|i| i.nipost.as_mut().expect("n").post_metadata = None);
    assert!(matches!(e, Err(AtxError::MissingPostMetadata)), "{e:?}");
    let e = initial_with(|i| i.challenge.publish_epoch = 3);
    assert!(
        matches!(
            e,
            Err(AtxError::PublishEpochTooFar {
                publish: 3,
                current: 1
            })
        ),
        "{e:?}"
    );
    let e = initial_with(|i| i.challenge.positioning_atx_id = [0; 32]);
    assert!(matches!(e, Err(AtxError::EmptyPositioningAtx)), "{e:?}");
    let e = initial_with(|i| i.num_units = 3);
    assert!(
        matches!(
            e,
            Err(AtxError::NumUnitsOutOfRange {
                got: 3,
                min: 1,
                max: 2
            })
        ),
        "{e:?}"
    );
    let e = initial_with(|i| i.num_units = 0);
    assert!(
        matches!(e, Err(AtxError::NumUnitsOutOfRange { got: 0, .. })),
        "{e:?}"
    );
    let e = initial_with(|i| {
        i.nipost
            .as_mut()
            .and_then(|n| n.post_metadata.as_mut())
            .expect("md")
            .labels_per_unit = 128
    });
    assert!(
        matches!(
            e,
            Err(AtxError::LabelsPerUnitTooSmall {
                got: 128,
                configured: 256
            })
        ),
        "{e:?}"
    );
}

#[test]
fn initial_atx_rules() {
    let e = initial_with(|i| i.challenge.initial_post = None);
    assert!(matches!(e, Err(AtxError::InitialMissingPost)), "{e:?}");
    let e = initial_with(|i| i.node_id = None);
    assert!(matches!(e, Err(AtxError::InitialMissingNodeId)), "{e:?}");
    let e = initial_with(|i| i.vrf_nonce = None);
    assert!(matches!(e, Err(AtxError::InitialMissingVrfNonce)), "{e:?}");
    let e = initial_with(|i| i.challenge.commitment_atx_id = None);
    assert!(matches!(e, Err(AtxError::InitialMissingCommitment)), "{e:?}");
    let e = initial_with(|i| i.challenge.commitment_atx_id = Some([0; 32]));
    assert!(matches!(e, Err(AtxError::EmptyCommitmentAtx)), "{e:?}");
    let e = initial_with(|i| i.challenge.sequence = 1);
    assert!(
        matches!(e, Err(AtxError::InitialSequenceNotZero { got: 1 })),
        "{e:?}"
    );
    // As in go-spacemesh, the node id is required but not compared with the signer.
    assert!(initial_with(|i| i.node_id = Some(bob().node_id)).is_ok());
}

#[test]
fn non_initial_atx_rules() {
    let post = alice().prove(&ZERO_CHALLENGE, 1);
    let e = next_with(|i, _| i.challenge.initial_post = Some(post), |_| {});
    assert!(matches!(e, Err(AtxError::UnexpectedInitialPost)), "{e:?}");
    let e = next_with(|i, _| i.node_id = Some(alice().node_id), |_| {});
    assert!(matches!(e, Err(AtxError::UnexpectedNodeId)), "{e:?}");
    let e = next_with(|i, _| i.challenge.commitment_atx_id = Some(golden()), |_| {});
    assert!(matches!(e, Err(AtxError::UnexpectedCommitmentAtx)), "{e:?}");
    // The baseline passes.
    next_with(|_, _| {}, |_| {}).expect("valid successor");
}

#[test]
fn commitment_rules() {
    // Unknown commitment ATX.
    let e = initial_with(|i| i.challenge.commitment_atx_id = Some([7; 32]));
    assert!(
        matches!(e, Err(AtxError::UnknownCommitmentAtx { id }) if id == [7; 32]),
        "{e:?}"
    );

    // An identity committed to Alice's first ATX (epoch 1) may publish in epoch 2, not in 1.
    let (first, mut lookup) = initial(1);
    let v1 = check(&first, &lookup).expect("first");
    lookup.add(v1);
    let carol = Identity::new(0xc0, v1.id);
    let early = carol.seal(carol.initial(1, 1), &mut lookup);
    let e = check(&early, &lookup);
    assert!(
        matches!(
            e,
            Err(AtxError::CommitmentAtxNotOlder {
                commitment_epoch: 1,
                publish: 1
            })
        ),
        "{e:?}"
    );
    lookup.epoch = 2;
    let on_time = carol.seal(carol.initial(2, 1), &mut lookup);
    let v = check(&on_time, &lookup).expect("carol valid");
    assert_eq!(v.commitment_atx_id, v1.id);

    // A successor whose identity's commitment is unknown to the node.
    let e = next_with(|_, _| {}, |l| l.commitments.clear());
    assert!(
        matches!(e, Err(AtxError::UnknownIdentityCommitment { .. })),
        "{e:?}"
    );
}

#[test]
fn previous_atx_rules() {
    let e = next_with(|i, _| i.challenge.prev_atx_id = [5; 32], |_| {});
    assert!(
        matches!(e, Err(AtxError::UnknownPrevAtx { id }) if id == [5; 32]),
        "{e:?}"
    );

    // Previous ATX of another smesher.
    let mut lookup = MapLookup::at(1);
    let b1 = bob().seal(bob().initial(1, 1), &mut lookup);
    let vb = check(&b1, &lookup).expect("bob");
    let e = next_with(
        |i, _| i.challenge.prev_atx_id = vb.id,
        |l| {
            l.add(vb);
        },
    );
    assert!(matches!(e, Err(AtxError::PrevAtxWrongSmesher { .. })), "{e:?}");

    // Previous ATX not older.
    let e = next_with(
        |i, _| {
            i.challenge.publish_epoch = 1;
        },
        |_| {},
    );
    assert!(
        matches!(
            e,
            Err(AtxError::PrevAtxNotOlder {
                prev_epoch: 1,
                publish: 1
            })
        ),
        "{e:?}"
    );

    // Sequence must be previous + 1.
    for bad in [0, 2, u64::MAX] {
        let e = next_with(|i, _| i.challenge.sequence = bad, |_| {});
        assert!(
            matches!(e, Err(AtxError::WrongSequence { expected: Some(1), got }) if got == bad),
            "{e:?}"
        );
    }
    let e = next_with(
        |i, _| i.challenge.sequence = 0,
        |l| {
            for v in l.atxs.values_mut() {
                v.sequence = u64::MAX;
            }
        },
    );
    assert!(
        matches!(
            e,
            Err(AtxError::WrongSequence {
                expected: None,
                got: 0
            })
        ),
        "{e:?}"
    );
}

#[test]
fn positioning_atx_rules() {
    let e = initial_with(|i| i.challenge.positioning_atx_id = [6; 32]);
    assert!(
        matches!(e, Err(AtxError::UnknownPositioningAtx { id }) if id == [6; 32]),
        "{e:?}"
    );
    // Positioned on an ATX of the same epoch.
    let mut lookup = MapLookup::at(1);
    let b1 = bob().seal(bob().initial(1, 1), &mut lookup);
    let vb = check(&b1, &lookup).expect("bob");
    lookup.add(vb);
    let mut inner = alice().initial(1, 1);
    inner.challenge.positioning_atx_id = vb.id;
    let atx = alice().seal(inner, &mut lookup);
    let e = check(&atx, &lookup);
    assert!(
        matches!(
            e,
            Err(AtxError::PositioningAtxNotOlder {
                positioning_epoch: 1,
                publish: 1
            })
        ),
        "{e:?}"
    );
    // Positioned on an older foreign ATX: valid, base height from it.
    let e = next_with(
        |i, _| i.challenge.positioning_atx_id = vb.id,
        |l| {
            l.add(vb);
        },
    );
    assert_eq!(e.expect("valid").base_height, TICKS);
}

#[test]
fn poet_and_membership_rules() {
    let (atx, lookup) = initial(1);
    let mut empty = lookup.clone();
    empty.poets.clear();
    assert!(matches!(
        check(&atx, &empty),
        Err(AtxError::UnknownPoetProof { .. })
    ));

    // A wrong leaf index or sibling, re-signed so only membership is wrong.
    let mut inner = atx.inner.clone();
    inner.nipost.as_mut().expect("n").membership.leaf_index = 0;
    let e = check(&alice().sign(inner), &lookup);
    assert!(
        matches!(e, Err(AtxError::InvalidMembership { leaf_index: 0 })),
        "{e:?}"
    );
    let mut inner = atx.inner.clone();
    inner.nipost.as_mut().expect("n").membership.nodes[1][0] ^= 1;
    let e = check(&alice().sign(inner), &lookup);
    assert!(
        matches!(e, Err(AtxError::InvalidMembership { leaf_index: 1 })),
        "{e:?}"
    );
    // The PoET statement holds another challenge: membership fails.
    let mut other = lookup.clone();
    for p in other.poets.values_mut() {
        p.statement[0] ^= 1;
    }
    assert!(matches!(
        check(&atx, &other),
        Err(AtxError::InvalidMembership { .. })
    ));
}

#[test]
fn vrf_nonce_rule() {
    let a = alice();
    let bad = (0..100_000).find(|&i| !a.vrf_ok(i, 1)).expect("a non-nonce");
    let e = initial_with(|i| i.vrf_nonce = Some(bad));
    assert!(matches!(e, Err(AtxError::InvalidVrfNonce(_))), "{e:?}");
    // A successor that sends a (new) invalid nonce is rejected too.
    let e = next_with(|i, _| i.vrf_nonce = Some(bad), |_| {});
    assert!(matches!(e, Err(AtxError::InvalidVrfNonce(_))), "{e:?}");
}

fn is_label_failure(e: &VerifyError) -> bool {
    matches!(e, VerifyError::InvalidMsb { .. } | VerifyError::InvalidLsb { .. })
}

#[test]
fn post_rules() {
    let a = alice();
    // Initial PoST made over another challenge (the NIPoST's): its labels fail.
    let nipost_post = a.prove(&a.poet_ref(1), 1);
    let e = initial_with(|i| i.challenge.initial_post = Some(nipost_post.clone()));
    assert!(
        matches!(&e, Err(AtxError::InvalidPost { kind: PostKind::Initial, source }) if is_label_failure(source)),
        "{e:?}"
    );
    // Initial PoST with a wrong number of index bytes.
    let e = initial_with(|i| i.challenge.initial_post.as_mut().expect("p").indices.push(0));
    assert!(
        matches!(
            &e,
            Err(AtxError::InvalidPost {
                kind: PostKind::Initial,
                source: VerifyError::InvalidIndicesLen { .. }
            })
        ),
        "{e:?}"
    );
    // NIPoST PoST made over the zero challenge: checked with all K2 (K3 = K2) to be certain.
    let initial_post = a.prove(&ZERO_CHALLENGE, 1);
    let mut lookup = MapLookup::at(1);
    let mut inner = a.initial(1, 1);
    inner.nipost.as_mut().expect("n").post = Some(initial_post);
    let atx = a.seal(inner, &mut lookup);
    let mut ctx = context();
    ctx.params.k3 = ctx.params.k2;
    let e = validate_atx_v1(&atx, &ctx, &lookup);
    assert!(
        matches!(&e, Err(AtxError::InvalidPost { kind: PostKind::NiPost, source }) if is_label_failure(source)),
        "{e:?}"
    );
    // A PoST of two units' data claimed for one unit fails (index length).
    let two = a.prove(&a.poet_ref(1), 2);
    let e = initial_with(|i| i.nipost.as_mut().expect("n").post = Some(two));
    assert!(
        matches!(
            &e,
            Err(AtxError::InvalidPost {
                kind: PostKind::NiPost,
                source: VerifyError::InvalidIndicesLen { .. }
            })
        ),
        "{e:?}"
    );
    // A k2pow that does not meet a harder difficulty (needs RandomX to say so).
    let (atx, lookup) = initial(1);
    let mut ctx = context();
    ctx.params.pow_difficulty = [0; 32];
    let e = validate_atx_v1(&atx, &ctx, &lookup);
    assert!(
        matches!(
            &e,
            Err(AtxError::InvalidPost {
                kind: PostKind::Initial,
                source: VerifyError::InvalidPoW(_)
            })
        ),
        "{e:?}"
    );
}

#[test]
fn derived_value_rules() {
    assert_eq!(ticks_and_weight(3, 125, 10).expect("ok"), (12, 36));
    assert_eq!(ticks_and_weight(3, 9, 10).expect("ok"), (0, 0));
    assert!(matches!(ticks_and_weight(1, 1, 0), Err(AtxError::ZeroTickSize)));
    assert!(matches!(
        ticks_and_weight(2, u64::MAX, 1),
        Err(AtxError::WeightOverflow {
            units: 2,
            ticks: u64::MAX
        })
    ));

    let (atx, lookup) = initial(2);
    let mut ctx = context();
    ctx.params.tick_size = 0;
    assert!(matches!(
        validate_atx_v1(&atx, &ctx, &lookup),
        Err(AtxError::ZeroTickSize)
    ));
    let mut huge = lookup.clone();
    for p in huge.poets.values_mut() {
        p.leaf_count = u64::MAX;
    }
    let mut ctx = context();
    ctx.params.tick_size = 1;
    assert!(matches!(
        validate_atx_v1(&atx, &ctx, &huge),
        Err(AtxError::WeightOverflow { units: 2, .. })
    ));

    // Height overflow: positioned on an ATX whose height is at the top.
    let e = next_with(
        |_, _| {},
        |l| {
            for v in l.atxs.values_mut() {
                v.base_height = u64::MAX - 5;
            }
        },
    );
    assert!(matches!(e, Err(AtxError::HeightOverflow { .. })), "{e:?}");
}
