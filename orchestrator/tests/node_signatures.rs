//! The coordinator's keystore signs exactly what the node verifies: an ATX signed through the
//! safety permit passes the node's ATX signature check, and a PoET registration signed in the
//! PoET domain is accepted by a PoET server (and refused when it signs something else).

use std::time::{Duration, SystemTime};

use node_bridge::atx::{
    signing_bytes, verify_atx_signature, ActivationTxV1, InnerActivationTxV1, MerkleProof, NIPost,
    NIPostChallengeV1, PostMetadata,
};
use node_bridge::poet::server::{PoetConfig, PoetServer, RegisterError, Registration};
use orchestrator::keystore::{atx_v1_message, domain_message, Domain, KdfParams, Keystore, SigningPermit};

const PASS: &str = "node signatures passphrase";
const GENESIS: [u8; 20] = [0x3c; 20];

fn keystore() -> (tempfile::TempDir, Keystore) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ks = Keystore::create(
        tmp.path().join("keystore"),
        PASS,
        KdfParams::new(8, 1, 1).expect("kdf"),
    )
    .expect("keystore");
    (tmp, ks)
}

fn inner(publish_epoch: u32, node_id: [u8; 32]) -> InnerActivationTxV1 {
    InnerActivationTxV1 {
        challenge: NIPostChallengeV1 {
            publish_epoch,
            sequence: 0,
            prev_atx_id: [0; 32],
            positioning_atx_id: [7; 32],
            commitment_atx_id: Some([7; 32]),
            initial_post: None,
        },
        coinbase: [1; 24],
        num_units: 2,
        nipost: Some(NIPost {
            membership: MerkleProof {
                nodes: vec![[9; 32]],
                leaf_index: 1,
            },
            post: None,
            post_metadata: Some(PostMetadata {
                challenge: [5; 32],
                labels_per_unit: 1024,
            }),
        }),
        node_id: Some(node_id),
        vrf_nonce: Some(42),
    }
}

#[test]
fn an_atx_signed_through_a_permit_verifies_at_the_node() {
    let (_tmp, ks) = keystore();
    let id = ks.generate().expect("generate");
    // Epochs on both sides of the compact encoding's mode changes.
    for epoch in [1u32, 63, 64, 16_383, 16_384, (1 << 30) + 5] {
        let inner = inner(epoch, *id.as_bytes());
        let atx_id = node_bridge::atx::atx_id(&inner);
        let message = atx_v1_message(epoch, &atx_id);
        assert_eq!(
            domain_message(&GENESIS, Domain::Atx, &message),
            signing_bytes(&GENESIS, &inner),
            "epoch {epoch}: the keystore and the node sign the same bytes"
        );
        let permit = SigningPermit::granted(id, epoch, *blake3::hash(&message).as_bytes());
        let signature = ks.sign_atx(permit, &GENESIS, &message).expect("sign");
        let mut atx = ActivationTxV1 {
            inner,
            smesher_id: *id.as_bytes(),
            signature,
        };
        assert!(verify_atx_signature(&GENESIS, &atx), "epoch {epoch}");
        // Another network's genesis, or another field, and the node refuses it.
        assert!(!verify_atx_signature(&[0x3d; 20], &atx));
        atx.inner.num_units = 3;
        assert!(!verify_atx_signature(&GENESIS, &atx));
    }
}

#[test]
fn a_poet_registration_signed_by_the_keystore_is_accepted() {
    let (_tmp, ks) = keystore();
    let id = ks.generate().expect("generate");
    let genesis = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut poet = PoetServer::new(PoetConfig::devnet(genesis, GENESIS, 1_000)).expect("poet");
    let challenge = [0x42; 32];
    let signature = ks.sign(&id, Domain::Poet, &GENESIS, &challenge).expect("sign");
    let reg = Registration {
        node_id: *id.as_bytes(),
        challenge,
        signature,
        deadline: None,
    };
    let now = genesis + Duration::from_secs(5);
    let registered = poet.register(now, &reg).expect("registered");
    assert_eq!(registered.round, 0);

    // Signed in another domain (hare), the same bytes are refused.
    let wrong = ks.sign(&id, Domain::Hare, &GENESIS, &[0x43; 32]).expect("sign");
    let reg = Registration {
        node_id: *id.as_bytes(),
        challenge: [0x43; 32],
        signature: wrong,
        deadline: None,
    };
    let err = poet.register(now, &reg).expect_err("wrong domain");
    assert!(matches!(err, RegisterError::BadSignature { .. }), "{err:?}");
}
