use proptest::prelude::*;

use super::*;

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let bytes = hex::decode(s).expect("valid hex");
    bytes.try_into().expect("right length")
}

/// One ECVRF-EDWARDS25519-SHA512-ELL2 example.
struct Vector {
    sk: &'static str,
    pk: &'static str,
    alpha: &'static str,
    h: &'static str,
    k: &'static str,
    u: &'static str,
    v: &'static str,
    pi: &'static str,
    beta: &'static str,
}

/// RFC 9381 Appendix B.4 (ECVRF-EDWARDS25519-SHA512-ELL2, examples 19-21; the same values
/// as draft-irtf-cfrg-vrf-13 Appendix A.4). SK/PK are the RFC 8032 §7.1 test keys.
/// pi and beta are also the "v11 and later" vectors of curve25519-voi's
/// `primitives/ed25519/extra/ecvrf/ecvrf_test.go`, i.e. what go-spacemesh's `ecvrf.Prove`
/// outputs. H, k, U (= k·B) and V (= k·H) are the intermediate values the RFC prints.
const RFC9381_ELL2: [Vector; 3] = [
    Vector {
        sk: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        pk: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        alpha: "",
        h: "b8066ebbb706c72b64390324e4a3276f129569eab100c26b9f05011200c1bad9",
        k: "55cbb247af9b8372259a97b2cfec656d78868deb33b203d51b9961c364522400",
        u: "762f5c178b68f0cddcc1157918edf45ec334ac8e8286601a3256c3bbf858edd9",
        v: "4652eba1c4612e6fce762977a59420b451e12964adbe4fbecd58a7aeff5860af",
        pi: "7d9c633ffeee27349264cf5c667579fc583b4bda63ab71d001f89c10003ab46f\
             14adf9a3cd8b8412d9038531e865c341cafa73589b023d14311c331a9ad15ff2\
             fb37831e00f0acaa6d73bc9997b06501",
        beta: "9d574bf9b8302ec0fc1e21c3ec5368269527b87b462ce36dab2d14ccf80c53cc\
               cf6758f058c5b1c856b116388152bbe509ee3b9ecfe63d93c3b4346c1fbc6c54",
    },
    Vector {
        sk: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        pk: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        alpha: "72",
        h: "76ac3ccb86158a9104dff819b1ca293426d305fd76b39b13c9356d9b58c08e57",
        k: "9565956daeedf376cad61b829b2a4d21ba1b52e9b3e2457477a64630a9711003",
        u: "8ec26e77b8cb3114dd2265fe1564a4efb40d109aa3312536d93dfe3d8d80a061",
        v: "fe799eb5770b4e3a5a27d22518bb631db183c8316bb552155f442c62a47d1c8b",
        pi: "47b327393ff2dd81336f8a2ef10339112401253b3c714eeda879f12c509072ef\
             055b48372bb82efbdce8e10c8cb9a2f9d60e93908f93df1623ad78a86a028d6b\
             c064dbfc75a6a57379ef855dc6733801",
        beta: "38561d6b77b71d30eb97a062168ae12b667ce5c28caccdf76bc88e093e463598\
               7cd96814ce55b4689b3dd2947f80e59aac7b7675f8083865b46c89b2ce9cc735",
    },
    Vector {
        sk: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        pk: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        alpha: "af82",
        h: "13d2a8b5ca32db7e98094a61f656a08c6c964344e058879a386a947a4e189ed1",
        k: "1fda4077f737098b3f361c33a36cccafd7e9e9b720e1f84011254e25f37eed02",
        u: "a012f35433df219a88ab0f9481f4e0065d00422c3285f3d34a8b0202f20bac60",
        v: "fb613986d171b3e98319c7ca4dc44c5dd8314a6e5616c1a4f16ce72bd7a0c25a",
        pi: "926e895d308f5e328e7aa159c06eddbe56d06846abf5d98c2512235eaa57fdce\
             35b46edfc655bc828d44ad09d1150f31374e7ef73027e14760d42e77341fe054\
             67bb286cc2c9d7fde29120a0b2320d04",
        beta: "121b7f9b9aaaa29099fc04a94ba52784d44eac976dd1a3cca458733be5cd090a\
               7b5fbd148444f17f8daf1fb55cb04b1ae85a626e30a54b4b0f8abf4a43314a58",
    },
];

#[test]
fn rfc9381_vectors_prove_verify_and_proof_to_hash() {
    for (i, vec) in RFC9381_ELL2.iter().enumerate() {
        let seed: [u8; 32] = unhex(vec.sk);
        let pk: [u8; 32] = unhex(vec.pk);
        let alpha = hex::decode(vec.alpha).expect("hex");
        let expected_pi: [u8; VRF_PROOF_LEN] = unhex(vec.pi);
        let expected_beta: [u8; VRF_OUTPUT_LEN] = unhex(vec.beta);

        assert_eq!(public_key(&seed), pk, "[{i}] PK");

        // Intermediate values: H, k, U = k·B, V = k·H.
        let key = ExpandedKey::from_seed(&seed);
        let h = encode_to_curve(&pk, &alpha);
        let h_string = h.compress().to_bytes();
        assert_eq!(hex::encode(h_string), vec.h, "[{i}] H");
        let k = nonce(&key.prefix, &h_string);
        assert_eq!(hex::encode(k.as_bytes()), vec.k, "[{i}] k");
        assert_eq!(
            hex::encode(EdwardsPoint::mul_base(&k).compress().as_bytes()),
            vec.u,
            "[{i}] U"
        );
        assert_eq!(hex::encode((h * k).compress().as_bytes()), vec.v, "[{i}] V");

        let pi = prove(&seed, &alpha);
        assert_eq!(hex::encode(pi), hex::encode(expected_pi), "[{i}] pi");
        assert_eq!(
            proof_to_hash(&expected_pi),
            Ok(expected_beta),
            "[{i}] proof_to_hash"
        );
        assert_eq!(
            verify(&pk, &expected_pi, &alpha),
            Ok(expected_beta),
            "[{i}] verify"
        );
    }
}

/// The v10-and-earlier proof for the first RFC 8032 key (curve25519-voi's `Prove_v10`
/// vector: the challenge without Y). go-spacemesh uses the v11+ semantics, so this must
/// NOT verify; beta is the same since it depends on Gamma only.
#[test]
fn draft_v10_proof_is_rejected() {
    let pk: [u8; 32] = unhex(RFC9381_ELL2[0].pk);
    let pi_v10: [u8; VRF_PROOF_LEN] = unhex(
        "7d9c633ffeee27349264cf5c667579fc583b4bda63ab71d001f89c10003ab46f\
         25898f6bd7d4ed4c75f0282b0f7bb9d0e61b387b76db60b3cbf34bf09109ccb3\
         3fab742a8bddc0c8ba3caf5c0b75bb04",
    );
    assert_eq!(verify(&pk, &pi_v10, b""), Err(VrfError::ProofDoesNotVerify));
    assert_eq!(proof_to_hash(&pi_v10), Ok(unhex(RFC9381_ELL2[0].beta)));
}

#[test]
fn public_key_matches_ed25519_dalek() {
    for seed in [[0u8; 32], [7u8; 32], unhex(RFC9381_ELL2[2].sk)] {
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        assert_eq!(public_key(&seed), signing.verifying_key().to_bytes());
    }
}

fn fixture() -> ([u8; 32], [u8; VRF_PROOF_LEN], &'static [u8]) {
    let seed: [u8; 32] = unhex(RFC9381_ELL2[1].sk);
    let alpha: &'static [u8] = b"proposal eligibility";
    (public_key(&seed), prove(&seed, alpha), alpha)
}

#[test]
fn rejects_wrong_key_and_wrong_alpha() {
    let (pk, pi, alpha) = fixture();
    assert!(verify(&pk, &pi, alpha).is_ok());
    let other = public_key(&[9u8; 32]);
    assert_eq!(verify(&other, &pi, alpha), Err(VrfError::ProofDoesNotVerify));
    assert_eq!(
        verify(&pk, &pi, b"proposal eligibilitz"),
        Err(VrfError::ProofDoesNotVerify)
    );
    assert_eq!(verify(&pk, &pi, b""), Err(VrfError::ProofDoesNotVerify));
}

/// q, the order of the prime subgroup, little-endian.
const Q_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn rejects_non_canonical_s() {
    let (pk, mut pi, alpha) = fixture();
    // s + q encodes the same scalar mod q, so only the canonicity check can catch it
    // (s < 2^253 and q < 2^253, so s + q still fits in 32 bytes).
    let mut carry = 0u16;
    for (byte, q) in pi[48..].iter_mut().zip(Q_LE) {
        let sum = u16::from(*byte) + u16::from(q) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert_eq!(verify(&pk, &pi, alpha), Err(VrfError::NonCanonicalS));
    assert_eq!(proof_to_hash(&pi), Err(VrfError::NonCanonicalS));
    pi[48..].copy_from_slice(&Q_LE);
    assert_eq!(verify(&pk, &pi, alpha), Err(VrfError::NonCanonicalS));
    pi[48..].copy_from_slice(&[0xff; 32]);
    assert_eq!(verify(&pk, &pi, alpha), Err(VrfError::NonCanonicalS));
}

/// y (little-endian) with the x sign bit.
fn encoding(y: u8, sign: bool, top: u8) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = y;
    b[31] = top | if sign { 0x80 } else { 0 };
    b
}

#[test]
fn rejects_invalid_and_small_order_public_keys() {
    let (_, pi, alpha) = fixture();
    // Identity (y = 1) and the point of order 2 (y = -1): valid encodings, small order.
    let identity = encoding(1, false, 0);
    let mut order_two = [0xff; 32];
    order_two[0] = 0xec;
    order_two[31] = 0x7f;
    for pk in [identity, order_two] {
        assert_eq!(verify(&pk, &pi, alpha), Err(VrfError::SmallOrderPublicKey));
    }
    // x = 0 with the sign bit set is not a canonical encoding (RFC 8032 §5.1.3 step 4).
    assert_eq!(
        verify(&encoding(1, true, 0), &pi, alpha),
        Err(VrfError::InvalidPublicKey)
    );
    // y ≥ p: y = p + n for small n; every such encoding is non-canonical.
    for n in 0u8..19 {
        let mut pk = [0xff; 32];
        pk[0] = 0xed + n;
        pk[31] = 0x7f;
        assert_eq!(
            verify(&pk, &pi, alpha),
            Err(VrfError::InvalidPublicKey),
            "y = p + {n}"
        );
    }
    // Some small y are not the y-coordinate of any point; find one and check it.
    let off_curve = (2u8..=255)
        .map(|y| encoding(y, false, 0))
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .expect("some small y is off the curve");
    assert_eq!(verify(&off_curve, &pi, alpha), Err(VrfError::InvalidPublicKey));
}

#[test]
fn rejects_invalid_gamma() {
    let (pk, mut pi, alpha) = fixture();
    let off_curve = (2u8..=255)
        .map(|y| encoding(y, false, 0))
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .expect("some small y is off the curve");
    pi[..32].copy_from_slice(&off_curve);
    assert_eq!(verify(&pk, &pi, alpha), Err(VrfError::InvalidGamma));
    assert_eq!(proof_to_hash(&pi), Err(VrfError::InvalidGamma));
    pi[..32].copy_from_slice(&encoding(1, true, 0));
    assert_eq!(verify(&pk, &pi, alpha), Err(VrfError::InvalidGamma));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prove_then_verify(seed in any::<[u8; 32]>(), alpha in proptest::collection::vec(any::<u8>(), 0..96)) {
        let pk = public_key(&seed);
        let pi = prove(&seed, &alpha);
        let beta = verify(&pk, &pi, &alpha);
        prop_assert_eq!(beta.clone(), proof_to_hash(&pi));
        prop_assert!(beta.is_ok());
        // Deterministic.
        prop_assert_eq!(prove(&seed, &alpha), pi);
    }

    #[test]
    fn any_flipped_byte_fails(
        seed in any::<[u8; 32]>(),
        alpha in proptest::collection::vec(any::<u8>(), 0..32),
        index in 0..VRF_PROOF_LEN,
        mask in 1u8..=255,
    ) {
        let pk = public_key(&seed);
        let mut pi = prove(&seed, &alpha);
        pi[index] ^= mask;
        prop_assert!(verify(&pk, &pi, &alpha).is_err());
    }
}
