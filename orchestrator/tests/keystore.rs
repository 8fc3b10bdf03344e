//! The keystore seen from outside: creation and opening, encryption at rest, go-spacemesh key
//! files, export, signing with and without permits, and that no secret is ever printed or stored
//! in clear.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use orchestrator::keystore::{
    atx_v1_message, domain_message, verify_signature, write_key_file, BallotPermit, Domain, KdfParams,
    KeyHexError, Keystore, KeystoreError, NodeId, SigningPermit,
};
use rand::rngs::OsRng;
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PASS: &str = "correct horse battery staple";
const GENESIS: [u8; 20] = [0x5a; 20];

fn cheap() -> KdfParams {
    // Argon2's minimum is 8 KiB for one lane; production uses KdfParams::default().
    KdfParams::new(8, 1, 1).unwrap_or_default()
}

fn new_store() -> Result<(TempDir, PathBuf, Keystore), KeystoreError> {
    let tmp = tempfile::tempdir().map_err(|source| KeystoreError::Io {
        step: orchestrator::keystore::IoStep::CreateDir,
        path: PathBuf::from("tempdir"),
        source,
    })?;
    let dir = tmp.path().join("keystore");
    let ks = Keystore::create(&dir, PASS, cheap())?;
    Ok((tmp, dir, ks))
}

/// A go-spacemesh key: 64 bytes = seed ‖ public key, as 128 hex characters.
fn go_key() -> (SigningKey, String) {
    let key = SigningKey::generate(&mut OsRng);
    let text = hex::encode(key.to_keypair_bytes());
    (key, text)
}

fn mode(path: &Path) -> Result<u32, std::io::Error> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

fn all_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(all_files(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn key_file(dir: &Path, id: &NodeId) -> PathBuf {
    dir.join("keys").join(format!("{id}.json"))
}

#[test]
fn create_then_open_round_trips_identities() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    assert!(ks.list().is_empty());
    let a = ks.generate()?;
    let b = ks.generate()?;
    assert_ne!(a, b);
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(ks.list(), expected);
    assert!(ks.contains(&a));
    assert_eq!(ks.public_key(&a)?, *a.as_bytes());
    let sig_before = ks.sign(&a, Domain::Poet, &GENESIS, b"register")?;
    drop(ks);

    let ks = Keystore::open(&dir, PASS)?;
    assert_eq!(ks.list(), expected);
    assert_eq!(ks.kdf_params(), cheap());
    // ed25519 is deterministic: the reopened key is the same key.
    assert_eq!(ks.sign(&a, Domain::Poet, &GENESIS, b"register")?, sig_before);

    assert!(matches!(
        Keystore::create(&dir, PASS, cheap()),
        Err(KeystoreError::AlreadyInitialised { .. })
    ));
    let again = Keystore::open_or_create(&dir, PASS, cheap())?;
    assert_eq!(again.list(), expected);
    Ok(())
}

#[test]
fn open_or_create_creates_when_missing_and_open_reports_not_found() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("nested/ks");
    assert!(matches!(
        Keystore::open(&dir, PASS),
        Err(KeystoreError::NotFound { .. })
    ));
    let ks = Keystore::open_or_create(&dir, PASS, cheap())?;
    assert!(ks.list().is_empty());
    assert!(dir.join("keystore.json").is_file());
    assert!(matches!(
        Keystore::create(tmp.path().join("x"), "", cheap()),
        Err(KeystoreError::EmptyPassphrase)
    ));
    Ok(())
}

#[test]
fn wrong_passphrase_is_refused_at_open() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    ks.generate()?;
    drop(ks);
    let err = Keystore::open(&dir, "not the passphrase").err();
    assert!(matches!(err, Some(KeystoreError::WrongPassphrase)), "{err:?}");
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("wrong passphrase for the keystore".to_owned())
    );
    Ok(())
}

#[test]
fn files_and_directories_are_private() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    let id = ks.generate()?;
    assert_eq!(mode(&dir)?, 0o700);
    assert_eq!(mode(&dir.join("keys"))?, 0o700);
    assert_eq!(mode(&dir.join("keystore.json"))?, 0o600);
    assert_eq!(mode(&key_file(&dir, &id))?, 0o600);
    // Only the header and one key file: no temporary files left behind.
    assert_eq!(all_files(&dir)?.len(), 2);
    drop(ks);

    // A key file readable by others is refused at open.
    fs::set_permissions(key_file(&dir, &id), fs::Permissions::from_mode(0o644))?;
    let err = Keystore::open(&dir, PASS).err();
    assert!(
        matches!(err, Some(KeystoreError::InsecurePermissions { mode: 0o644, .. })),
        "{err:?}"
    );
    fs::set_permissions(key_file(&dir, &id), fs::Permissions::from_mode(0o600))?;
    fs::set_permissions(dir.join("keys"), fs::Permissions::from_mode(0o750))?;
    let err = Keystore::open(&dir, PASS).err();
    assert!(
        matches!(err, Some(KeystoreError::InsecurePermissions { mode: 0o750, .. })),
        "{err:?}"
    );
    fs::set_permissions(dir.join("keys"), fs::Permissions::from_mode(0o700))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let err = Keystore::open(&dir, PASS).err();
    assert!(
        matches!(err, Some(KeystoreError::InsecurePermissions { mode: 0o755, .. })),
        "{err:?}"
    );
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    assert_eq!(Keystore::open(&dir, PASS)?.list(), vec![id]);
    Ok(())
}

#[test]
fn tampered_ciphertext_is_refused() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    let id = ks.generate()?;
    drop(ks);
    let path = key_file(&dir, &id);
    let mut file: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    let ct = file["ciphertext"].as_str().ok_or("no ciphertext")?.to_owned();
    let mut bytes = hex::decode(ct)?;
    bytes[0] ^= 1;
    file["ciphertext"] = serde_json::Value::String(hex::encode(bytes));
    fs::write(&path, serde_json::to_vec(&file)?)?;
    let err = Keystore::open(&dir, PASS).err();
    assert!(
        matches!(err, Some(KeystoreError::KeyFileAuthentication { .. })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn swapped_key_files_are_refused() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    let a = ks.generate()?;
    let b = ks.generate()?;
    drop(ks);
    let (pa, pb) = (key_file(&dir, &a), key_file(&dir, &b));
    let (ca, cb) = (fs::read(&pa)?, fs::read(&pb)?);
    fs::write(&pa, &cb)?;
    fs::write(&pb, &ca)?;
    let err = Keystore::open(&dir, PASS).err();
    assert!(
        matches!(err, Some(KeystoreError::KeyFileAuthentication { .. })),
        "{err:?}"
    );

    // A key file renamed to another identity's name is refused too.
    fs::write(&pa, &ca)?;
    fs::remove_file(&pb)?;
    let c = NodeId::from(SigningKey::generate(&mut OsRng).verifying_key());
    fs::rename(&pa, key_file(&dir, &c))?;
    let err = Keystore::open(&dir, PASS).err();
    assert!(
        matches!(err, Some(KeystoreError::KeyFileAuthentication { .. })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn tampered_header_is_refused() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    drop(ks);
    let path = dir.join("keystore.json");
    let mut header: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    header["salt"] = serde_json::Value::String("00".repeat(32));
    fs::write(&path, serde_json::to_vec(&header)?)?;
    assert!(matches!(
        Keystore::open(&dir, PASS),
        Err(KeystoreError::WrongPassphrase)
    ));
    fs::write(&path, b"{not json")?;
    assert!(matches!(
        Keystore::open(&dir, PASS),
        Err(KeystoreError::MalformedHeader { .. })
    ));
    Ok(())
}

#[test]
fn go_spacemesh_key_imports_and_exports_unchanged() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    let (key, text) = go_key();
    let id = ks.import_key_hex(&text)?;
    assert_eq!(id.as_bytes(), key.verifying_key().as_bytes());
    let exported = ks.export_key_hex(&id, PASS)?;
    assert_eq!(exported.as_str(), text);

    // One trailing newline is tolerated; importing again is refused.
    assert!(matches!(
        ks.import_key_hex(&format!("{text}\n")),
        Err(KeystoreError::AlreadyExists { node_id }) if node_id == id
    ));
    drop(ks);
    let ks = Keystore::open(&dir, PASS)?;
    assert_eq!(ks.export_key_hex(&id, PASS)?.as_str(), text);
    Ok(())
}

#[test]
fn trailing_newline_and_uppercase_are_accepted() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let (_, text) = go_key();
    let id = ks.import_key_hex(&format!("{}\n", text.to_uppercase()))?;
    assert_eq!(ks.export_key_hex(&id, PASS)?.as_str(), text);
    Ok(())
}

#[test]
fn malformed_keys_are_refused_with_their_reason() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let (_, text) = go_key();
    let invalid = |t: &str| match ks.import_key_hex(t) {
        Err(KeystoreError::InvalidKeyHex(reason)) => Some(reason),
        _ => None,
    };
    assert_eq!(invalid(&text[..64]), Some(KeyHexError::WrongLength { found: 64 }));
    assert_eq!(
        invalid(&format!("{text}00")),
        Some(KeyHexError::WrongLength { found: 130 })
    );
    assert_eq!(
        invalid(&format!("{text}\n\n")),
        Some(KeyHexError::WrongLength { found: 129 })
    );
    assert_eq!(invalid(""), Some(KeyHexError::WrongLength { found: 0 }));
    let not_hex = format!("{}xy{}", &text[..10], &text[12..]);
    assert_eq!(invalid(&not_hex), Some(KeyHexError::NotHex { index: 10 }));
    // Seed of one key, public half of another.
    let (_, other) = go_key();
    let mismatched = format!("{}{}", &text[..64], &other[64..]);
    assert_eq!(invalid(&mismatched), Some(KeyHexError::PublicKeyMismatch));
    assert!(ks.list().is_empty());
    Ok(())
}

#[test]
fn identities_dir_imports_only_top_level_key_files() -> TestResult {
    let (tmp, _dir, ks) = new_store()?;
    let ids_dir = tmp.path().join("node/identities");
    fs::create_dir_all(ids_dir.join("sub"))?;
    let (k1, t1) = go_key();
    let (k2, t2) = go_key();
    let (_, t3) = go_key();
    fs::write(ids_dir.join("a.key"), &t1)?;
    fs::write(ids_dir.join("b.key"), format!("{t2}\n"))?;
    fs::write(ids_dir.join("sub/c.key"), &t3)?; // sub-directories are ignored
    fs::write(ids_dir.join("notes.txt"), "not a key")?; // other extensions are ignored
    let ids = ks.import_identities_dir(&ids_dir)?;
    assert_eq!(
        ids,
        vec![NodeId::from(k1.verifying_key()), NodeId::from(k2.verifying_key())]
    );
    assert_eq!(ks.list().len(), 2);
    // Importing the same directory again is refused as a whole.
    assert!(matches!(
        ks.import_identities_dir(&ids_dir),
        Err(KeystoreError::AlreadyExists { .. })
    ));
    assert_eq!(ks.list().len(), 2);
    Ok(())
}

#[test]
fn identities_dir_with_duplicates_or_bad_files_is_refused_whole() -> TestResult {
    let (tmp, _dir, ks) = new_store()?;
    let ids_dir = tmp.path().join("identities");
    fs::create_dir_all(&ids_dir)?;
    let (k, t) = go_key();
    fs::write(ids_dir.join("one.key"), &t)?;
    fs::write(ids_dir.join("two.key"), format!("{t}\n"))?;
    match ks.import_identities_dir(&ids_dir) {
        Err(KeystoreError::DuplicateIdentity {
            node_id,
            first,
            second,
        }) => {
            assert_eq!(node_id, NodeId::from(k.verifying_key()));
            assert_eq!(first, ids_dir.join("one.key"));
            assert_eq!(second, ids_dir.join("two.key"));
        }
        other => return Err(format!("expected DuplicateIdentity, got {other:?}").into()),
    }
    assert!(ks.list().is_empty());

    fs::remove_file(ids_dir.join("two.key"))?;
    fs::write(ids_dir.join("zz.key"), &t[..100])?;
    match ks.import_identities_dir(&ids_dir) {
        Err(KeystoreError::InvalidKeyFile {
            path,
            source: KeyHexError::WrongLength { found: 100 },
        }) => {
            assert_eq!(path, ids_dir.join("zz.key"));
        }
        other => return Err(format!("expected InvalidKeyFile, got {other:?}").into()),
    }
    assert!(ks.list().is_empty(), "a refused import imports nothing");
    Ok(())
}

#[test]
fn export_requires_the_passphrase() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let id = ks.generate()?;
    assert!(matches!(
        ks.export_key_hex(&id, "wrong"),
        Err(KeystoreError::WrongPassphrase)
    ));
    assert!(matches!(
        ks.export_key_hex(&id, ""),
        Err(KeystoreError::WrongPassphrase)
    ));
    let unknown = NodeId::from_bytes([3; 32]);
    assert!(matches!(
        ks.export_key_hex(&unknown, PASS),
        Err(KeystoreError::UnknownIdentity { .. })
    ));
    let text = ks.export_key_hex(&id, PASS)?;
    assert_eq!(text.len(), 128);
    assert!(text
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    Ok(())
}

#[test]
fn exported_key_file_is_what_go_spacemesh_loads() -> TestResult {
    let (tmp, _dir, ks) = new_store()?;
    let id = ks.generate()?;
    let text = ks.export_key_hex(&id, PASS)?;
    let ids_dir = tmp.path().join("node/identities");
    let path = write_key_file(&ids_dir, "smesher-1.key", &text)?;
    assert_eq!(path, ids_dir.join("smesher-1.key"));
    assert_eq!(fs::read_to_string(&path)?, text.as_str()); // no newline
    assert_eq!(mode(&path)?, 0o600);
    assert_eq!(mode(&ids_dir)?, 0o700);
    assert_eq!(fs::read_dir(&ids_dir)?.count(), 1);
    // Never overwritten; names are checked; the text is checked.
    assert!(matches!(
        write_key_file(&ids_dir, "smesher-1.key", &text),
        Err(KeystoreError::KeyFileExists { .. })
    ));
    for bad in ["../x.key", "x.txt", ".key", ".hidden.key", "a/b.key", ""] {
        assert!(
            matches!(
                write_key_file(&ids_dir, bad, &text),
                Err(KeystoreError::InvalidKeyFileName { .. })
            ),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(
        write_key_file(&ids_dir, "y.key", "abcd"),
        Err(KeystoreError::InvalidKeyHex(_))
    ));

    // The written file imports into another keystore as the same identity.
    let (_tmp2, _dir2, other) = new_store()?;
    assert_eq!(other.import_identities_dir(&ids_dir)?, vec![id]);
    Ok(())
}

#[test]
fn signatures_verify_with_ed25519_over_prefix_domain_message() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let id = ks.generate()?;
    let sig = ks.sign(&id, Domain::Poet, &GENESIS, b"poet challenge")?;
    let signed = domain_message(&GENESIS, Domain::Poet, b"poet challenge");
    assert_eq!(signed.len(), 20 + 1 + 14);
    assert_eq!(signed[20], 4);
    assert!(verify_signature(id.as_bytes(), &signed, &sig));
    // Also with ed25519-dalek directly.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(id.as_bytes())?;
    vk.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&sig))?;
    // Other domain, other prefix, other message: invalid.
    assert!(!verify_signature(
        id.as_bytes(),
        &domain_message(&GENESIS, Domain::Hare, b"poet challenge"),
        &sig
    ));
    assert!(!verify_signature(
        id.as_bytes(),
        &domain_message(&[0; 20], Domain::Poet, b"poet challenge"),
        &sig
    ));
    assert!(!verify_signature(id.as_bytes(), b"poet challenge", &sig));

    assert!(matches!(
        ks.sign(&id, Domain::Atx, &GENESIS, b"x"),
        Err(KeystoreError::AtxRequiresPermit)
    ));
    let unknown = NodeId::from_bytes([1; 32]);
    assert!(matches!(
        ks.sign(&unknown, Domain::Poet, &GENESIS, b"x"),
        Err(KeystoreError::UnknownIdentity { .. })
    ));
    Ok(())
}

#[test]
fn atx_signing_needs_a_permit_for_that_exact_message() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let id = ks.generate()?;
    let message = atx_v1_message(7, &[0xa7; 32]);
    let other = atx_v1_message(7, &[0xa8; 32]);

    let permit = SigningPermit::granted(id, 7, *blake3::hash(&message).as_bytes());
    assert!(matches!(
        ks.sign_atx(permit, &GENESIS, &other),
        Err(KeystoreError::PermitMessageMismatch { node_id, publish_epoch: 7 }) if node_id == id
    ));

    let stranger = NodeId::from_bytes([2; 32]);
    let permit = SigningPermit::granted(stranger, 7, *blake3::hash(&message).as_bytes());
    assert!(matches!(
        ks.sign_atx(permit, &GENESIS, &message),
        Err(KeystoreError::UnknownIdentity { .. })
    ));

    let permit = SigningPermit::granted(id, 7, *blake3::hash(&message).as_bytes());
    assert_eq!(permit.node_id(), id);
    assert_eq!(permit.publish_epoch(), 7);
    let sig = ks.sign_atx(permit, &GENESIS, &message)?;
    let signed = domain_message(&GENESIS, Domain::Atx, &message);
    assert_eq!(signed[20], 0, "ATX domain byte");
    assert_eq!(signed[21], 7 << 2, "compact-encoded publish epoch");
    assert!(verify_signature(id.as_bytes(), &signed, &sig));
    Ok(())
}

#[test]
fn ballot_signing_needs_a_permit_for_that_exact_message() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let id = ks.generate()?;
    assert!(matches!(
        ks.sign(&id, Domain::Ballot, &GENESIS, b"x"),
        Err(KeystoreError::BallotRequiresPermit)
    ));
    let message = b"layer 30 ballot metadata".to_vec();
    let permit = BallotPermit::granted(id, 30, *blake3::hash(b"another ballot").as_bytes());
    assert!(matches!(
        ks.sign_ballot(permit, &GENESIS, &message),
        Err(KeystoreError::BallotPermitMismatch { node_id, layer: 30 }) if node_id == id
    ));
    let permit = BallotPermit::granted(id, 30, *blake3::hash(&message).as_bytes());
    let sig = ks.sign_ballot(permit, &GENESIS, &message)?;
    let signed = domain_message(&GENESIS, Domain::Ballot, &message);
    assert_eq!(signed[20], 2, "ballot domain byte");
    assert!(verify_signature(id.as_bytes(), &signed, &sig));
    Ok(())
}

/// The keystore's VRF proofs are the identity's ECVRF (checked with the node's verifier and
/// against a proof made from the raw seed), deterministic, and need a known identity.
#[test]
fn vrf_proofs_verify_under_the_node_id() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let (key, text) = go_key();
    let id = ks.import_key_hex(&text)?;
    let alpha = b"eligibility slot 3";
    let proof = ks.vrf_prove(&id, alpha)?;
    assert_eq!(proof, ks.vrf_prove(&id, alpha)?);
    assert_eq!(proof, node_bridge::vrf::prove(&key.to_bytes(), alpha));
    assert!(node_bridge::vrf::verify(id.as_bytes(), &proof, alpha).is_ok());
    assert!(node_bridge::vrf::verify(id.as_bytes(), &proof, b"another slot").is_err());
    assert!(matches!(
        ks.vrf_prove(&NodeId::from_bytes([3; 32]), alpha),
        Err(KeystoreError::UnknownIdentity { .. })
    ));
    Ok(())
}

#[test]
fn debug_output_holds_no_secret() -> TestResult {
    let (_tmp, _dir, ks) = new_store()?;
    let (key, text) = go_key();
    let id = ks.import_key_hex(&text)?;
    let seed_hex = hex::encode(key.to_bytes());
    let debug = format!("{ks:?} {ks:#?}");
    assert!(!debug.contains(&seed_hex), "{debug}");
    assert!(!debug.contains(&seed_hex.to_uppercase()));
    assert!(!debug.contains(&text));
    assert!(debug.contains("Keystore"));
    let permit = SigningPermit::granted(id, 1, [0; 32]);
    assert!(!format!("{permit:?}").contains(&seed_hex));
    // Errors carry no key material either.
    let err = ks.import_key_hex(&text).err().ok_or("expected an error")?;
    assert!(!format!("{err:?} {err}").contains(&seed_hex));
    let (_, fresh) = go_key();
    let broken = format!("{}g{}", &fresh[..5], &fresh[6..]);
    let err = ks.import_key_hex(&broken).err().ok_or("expected an error")?;
    assert!(!format!("{err:?} {err}").contains(&fresh[..32]));
    Ok(())
}

#[test]
fn no_key_material_is_stored_in_clear() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    let mut seeds = Vec::new();
    for _ in 0..3 {
        let (key, text) = go_key();
        ks.import_key_hex(&text)?;
        seeds.push(key.to_bytes());
    }
    ks.generate()?;
    for path in all_files(&dir)? {
        let content = fs::read(&path)?;
        let lower = String::from_utf8_lossy(&content).to_lowercase();
        for seed in &seeds {
            assert!(
                !lower.contains(&hex::encode(seed)),
                "seed hex found in {}",
                path.display()
            );
            assert!(
                !content.windows(32).any(|w| w == seed),
                "raw seed found in {}",
                path.display()
            );
        }
    }
    // The passphrase is not stored either.
    for path in all_files(&dir)? {
        assert!(!String::from_utf8_lossy(&fs::read(&path)?).contains(PASS));
    }
    Ok(())
}

#[test]
fn delete_removes_identity_and_file() -> TestResult {
    let (_tmp, dir, ks) = new_store()?;
    let a = ks.generate()?;
    let b = ks.generate()?;
    ks.delete(&a)?;
    assert!(!ks.contains(&a));
    assert!(!key_file(&dir, &a).exists());
    assert!(matches!(
        ks.delete(&a),
        Err(KeystoreError::UnknownIdentity { .. })
    ));
    drop(ks);
    assert_eq!(Keystore::open(&dir, PASS)?.list(), vec![b]);
    Ok(())
}

#[test]
fn node_id_serialises_as_hex() -> TestResult {
    let text = format!("{}ff", "00".repeat(31));
    let id: NodeId = text.parse()?;
    assert_eq!(serde_json::to_string(&id)?, format!("\"{text}\""));
    assert_eq!(serde_json::from_str::<NodeId>(&format!("\"{text}\""))?, id);
    Ok(())
}

#[test]
fn production_params_are_the_default() {
    let p = KdfParams::default();
    assert_eq!((p.m_cost_kib(), p.t_cost(), p.p_cost()), (64 * 1024, 3, 1));
}
