use super::*;
use crate::vm::address::wallet_address;
use crate::vm::receipt::{TxReceipt, TxStatus};
use crate::vm::tx::{encode_unsigned, sign_multi, sign_single, wallet_self_spawn, wallet_spend, SpawnArgs};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

const GENESIS: GenesisId = [7u8; 20];
const SMH: u64 = 1_000_000_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn addr(k: &SigningKey) -> Address {
    wallet_address(&k.verifying_key().to_bytes())
}

fn vm_with(funded: &[(&SigningKey, u64)]) -> Vm {
    let genesis: Vec<GenesisAccount> = funded
        .iter()
        .map(|(k, b)| GenesisAccount {
            address: addr(k),
            balance: *b,
        })
        .collect();
    Vm::new(VmConfig::new(GENESIS), &genesis)
}

/// A VM where `k` is a spawned wallet holding `balance` after the spawn fee.
fn spawned(k: &SigningKey, balance: u64) -> Vm {
    let mut vm = vm_with(&[(k, balance + 100_432)]);
    let o = vm.apply_tx(&wallet_self_spawn(k, 0, 1, &GENESIS), 1, u64::MAX);
    assert_eq!(o.result, TxResult::Applied);
    assert_eq!(vm.account(&addr(k)).balance, balance);
    vm
}

#[test]
fn self_spawn_of_a_funded_stub_spawns_it_and_charges_the_spec_gas() {
    let k = key(1);
    let mut vm = vm_with(&[(&k, 10 * SMH)]);
    let raw = wallet_self_spawn(&k, 0, 2, &GENESIS);
    assert_eq!(raw.len(), 148);
    let o = vm.apply_tx(&raw, 5, u64::MAX);
    assert_eq!(o.result, TxResult::Applied);
    assert_eq!(o.gas.map(|g| g.max_gas()), Some(100_432));
    assert_eq!(o.fee, 2 * 100_432);
    let a = vm.account(&addr(&k));
    assert!(a.is_spawned());
    assert_eq!(a.template(), Some(crate::vm::Template::Wallet));
    assert_eq!(a.state(), k.verifying_key().to_bytes().to_vec());
    assert_eq!(a.next_nonce, 1);
    assert_eq!(a.layer, 5);
    assert_eq!(a.balance, 10 * SMH - 2 * 100_432);
}

#[test]
fn spend_of_one_smh_costs_36090_gas() {
    let k = key(2);
    let mut vm = spawned(&k, 5 * SMH);
    let dest = addr(&key(3));
    let raw = wallet_spend(&k, dest, SMH, 1, 1, &GENESIS);
    assert_eq!(raw.len(), 120);
    assert_eq!(vm.estimate(&raw).map(|g| g.max_gas()), Ok(36_090));
    let o = vm.apply_tx(&raw, 2, u64::MAX);
    assert_eq!(o.result, TxResult::Applied);
    assert_eq!(o.fee, 36_090);
    assert_eq!(o.touched, vec![addr(&k), dest]);
    assert_eq!(vm.account(&addr(&k)).balance, 4 * SMH - 36_090);
    assert_eq!(vm.account(&dest).balance, SMH);
    assert!(!vm.account(&dest).is_spawned(), "the destination stays a stub");
}

#[test]
fn the_go_spacemesh_schedule_charges_its_own_figures() {
    let k = key(2);
    let mut cfg = VmConfig::new(GENESIS);
    cfg.gas = GasSchedule::GO_SPACEMESH;
    let vm = Vm::new(
        cfg,
        &[GenesisAccount {
            address: addr(&k),
            balance: SMH,
        }],
    );
    let raw = wallet_self_spawn(&k, 0, 1, &GENESIS);
    assert_eq!(vm.estimate(&raw).map(|g| g.max_gas()), Ok(85_432));
}

#[test]
fn a_spawn_whose_args_do_not_hash_to_the_principal_is_ineffective() {
    let k = key(4);
    let other = key(5);
    let mut vm = vm_with(&[(&k, SMH)]);
    // Principal k's stub, spawn args of another key.
    let args = SpawnArgs::Wallet {
        public_key: other.verifying_key().to_bytes(),
    };
    let raw = sign_single(
        encode_unsigned(addr(&k), 0, 1, &Call::Spawn(args)),
        &GENESIS,
        &other,
    );
    let before = vm.accounts().clone();
    let o = vm.apply_tx(&raw, 1, u64::MAX);
    assert_eq!(
        o.result,
        TxResult::Ineffective(Ineffective::Malformed(TxError::NotSpawned(addr(&k))))
    );
    assert_eq!(vm.accounts(), &before);
}

fn assert_ineffective(vm: &mut Vm, raw: &[u8], want: Ineffective) {
    let before = vm.accounts().clone();
    let o = vm.apply_tx(raw, 9, u64::MAX);
    assert_eq!(o.result, TxResult::Ineffective(want));
    assert_eq!((o.fee, o.gas_used), (0, 0));
    assert!(o.touched.is_empty());
    assert_eq!(vm.accounts(), &before, "no state change");
}

#[test]
fn wrong_nonce_zero_gas_price_and_bad_signature_are_ineffective() {
    let k = key(6);
    let mut vm = spawned(&k, SMH);
    let dest = addr(&key(7));
    // next nonce is 1 after the self-spawn.
    assert_ineffective(
        &mut vm,
        &wallet_spend(&k, dest, 10, 0, 1, &GENESIS),
        Ineffective::NonceTooLow {
            nonce: 0,
            next_nonce: 1,
        },
    );
    assert_ineffective(
        &mut vm,
        &wallet_spend(&k, dest, 10, 1, 0, &GENESIS),
        Ineffective::ZeroGasPrice,
    );
    // Signed for another network.
    assert_ineffective(
        &mut vm,
        &wallet_spend(&k, dest, 10, 1, 1, &[0u8; 20]),
        Ineffective::BadSignature,
    );
    // Signed by another key for k's principal.
    let forged = sign_single(
        encode_unsigned(
            addr(&k),
            1,
            1,
            &Call::Spend {
                destination: dest,
                amount: 10,
            },
        ),
        &GENESIS,
        &key(7),
    );
    assert_ineffective(&mut vm, &forged, Ineffective::BadSignature);
    // A spend from a stub.
    let stub = key(8);
    assert_ineffective(
        &mut vm,
        &wallet_spend(&stub, dest, 10, 0, 1, &GENESIS),
        Ineffective::Malformed(TxError::NotSpawned(addr(&stub))),
    );
    // Garbage.
    assert!(matches!(
        vm.apply_tx(&[1, 2, 3], 9, u64::MAX).result,
        TxResult::Ineffective(Ineffective::Malformed(_))
    ));
}

#[test]
fn intrinsic_gas_and_block_gas_make_a_tx_ineffective() {
    let k = key(9);
    let mut vm = vm_with(&[(&k, 20_000)]);
    let raw = wallet_self_spawn(&k, 0, 1, &GENESIS);
    assert_ineffective(
        &mut vm,
        &raw,
        Ineffective::IntrinsicGasNotCovered {
            balance: 20_000,
            intrinsic: 55_432,
        },
    );
    let mut vm = vm_with(&[(&k, SMH)]);
    let before = vm.accounts().clone();
    let o = vm.apply_tx(&raw, 1, 100_000);
    assert_eq!(
        o.result,
        TxResult::Ineffective(Ineffective::BlockGasExceeded {
            max_gas: 100_432,
            left: 100_000
        })
    );
    assert_eq!(vm.accounts(), &before);
}

#[test]
fn a_spend_above_the_balance_fails_but_pays_and_bumps_the_nonce() {
    let k = key(10);
    let mut vm = spawned(&k, SMH);
    let dest = addr(&key(11));
    // A nonce gap is allowed; the next nonce becomes nonce + 1. 2 SMH (> 2^30) takes a
    // 5-byte compact, so the tx is 121 bytes: one more TXDATA word than the 120-byte spend.
    let raw = wallet_spend(&k, dest, 2 * SMH, 4, 1, &GENESIS);
    assert_eq!(raw.len(), 121);
    let fee = 36_090 + 128;
    let o = vm.apply_tx(&raw, 3, u64::MAX);
    assert_eq!(
        o.result,
        TxResult::Failed(Failure::InsufficientBalance {
            amount: 2 * SMH,
            balance: SMH - fee
        })
    );
    assert_eq!(o.fee, fee);
    assert_eq!(o.touched, vec![addr(&k)]);
    let a = vm.account(&addr(&k));
    assert_eq!(a.balance, SMH - fee);
    assert_eq!(a.next_nonce, 5);
    assert_eq!(vm.account(&dest).balance, 0);
    assert!(!vm.accounts().exists(&dest));
}

#[test]
fn a_fee_above_the_balance_takes_the_balance_and_fails_out_of_gas() {
    let k = key(12);
    let mut vm = vm_with(&[(&k, 150_000)]);
    let o = vm.apply_tx(&wallet_self_spawn(&k, 0, 2, &GENESIS), 1, u64::MAX);
    assert_eq!(
        o.result,
        TxResult::Failed(Failure::OutOfGas {
            fee: 200_864,
            balance: 150_000
        })
    );
    assert_eq!(o.fee, 150_000);
    let a = vm.account(&addr(&k));
    assert_eq!((a.balance, a.next_nonce, a.is_spawned()), (0, 1, false));
}

#[test]
fn spawning_twice_fails_and_a_wallet_spawns_a_multisig() {
    let k = key(13);
    let mut vm = spawned(&k, 10 * SMH);
    let o = vm.apply_tx(&wallet_self_spawn(&k, 1, 1, &GENESIS), 1, u64::MAX);
    assert_eq!(o.result, TxResult::Failed(Failure::AlreadySpawned(addr(&k))));
    assert_eq!(vm.account(&addr(&k)).next_nonce, 2);

    let keys = [key(20), key(21), key(22)];
    let ms = SpawnArgs::MultiSig {
        required: 2,
        public_keys: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
    };
    let ms_addr = ms.address();
    let raw = sign_single(
        encode_unsigned(addr(&k), 2, 1, &Call::Spawn(ms.clone())),
        &GENESIS,
        &k,
    );
    let o = vm.apply_tx(&raw, 2, u64::MAX);
    assert_eq!(o.result, TxResult::Applied);
    assert_eq!(o.touched, vec![addr(&k), ms_addr]);
    assert_eq!(
        vm.account(&ms_addr).template(),
        Some(crate::vm::Template::MultiSig)
    );

    // Fund it, then spend 2-of-3.
    let fund = wallet_spend(&k, ms_addr, 3 * SMH, 3, 1, &GENESIS);
    assert_eq!(vm.apply_tx(&fund, 2, u64::MAX).result, TxResult::Applied);
    let dest = addr(&key(23));
    let unsigned = encode_unsigned(
        ms_addr,
        0,
        1,
        &Call::Spend {
            destination: dest,
            amount: SMH,
        },
    );
    let one_sig_short = sign_multi(unsigned.clone(), &GENESIS, &[(1, &keys[1])]);
    assert!(matches!(
        vm.apply_tx(&one_sig_short, 3, u64::MAX).result,
        TxResult::Ineffective(Ineffective::Malformed(_))
    ));
    let raw = sign_multi(unsigned, &GENESIS, &[(0, &keys[0]), (1, &keys[1])]);
    let o = vm.apply_tx(&raw, 3, u64::MAX);
    assert_eq!(o.result, TxResult::Applied);
    let g = o.gas.expect("gas known");
    assert_eq!(g.base, 20_000 + 2 * 3_000);
    assert_eq!(vm.account(&dest).balance, SMH);
}

#[test]
fn a_layer_orders_by_principal_and_nonce_and_credits_after_the_fees() {
    let a = key(30);
    let b = key(31);
    let mut vm = vm_with(&[(&a, 10 * SMH), (&b, 10 * SMH)]);
    let sink = addr(&key(32));
    // Submitted out of order: spends before spawns, nonces reversed.
    let txs = vec![
        wallet_spend(&a, sink, 2, 2, 1, &GENESIS),
        wallet_spend(&b, sink, 5, 1, 1, &GENESIS),
        wallet_spend(&a, sink, 1, 1, 1, &GENESIS),
        wallet_self_spawn(&b, 0, 1, &GENESIS),
        wallet_self_spawn(&a, 0, 1, &GENESIS),
        vec![0xff; 3],
        wallet_spend(&b, sink, 5, 1, 0, &GENESIS),
    ];
    let total_before = vm.accounts().total_balance();
    let coinbase = addr(&key(33));
    let out = vm
        .apply_layer(7, &txs, |fees| vec![(coinbase, fees + 1_000)])
        .expect("applies");
    let applied = out.txs.iter().filter(|o| o.result == TxResult::Applied).count();
    assert_eq!(applied, 5);
    assert_eq!(out.txs.len(), 7);
    assert!(
        matches!(out.txs[6].result, TxResult::Ineffective(_)),
        "garbage last"
    );
    assert_eq!(out.fees, 2 * 100_432 + 3 * 36_090);
    assert_eq!(out.gas_used, out.fees);
    assert_eq!(out.credited, out.fees + 1_000);
    assert_eq!(vm.account(&sink).balance, 8);
    assert_eq!(vm.account(&coinbase).balance, out.fees + 1_000);
    assert_eq!(vm.accounts().total_balance(), total_before + 1_000);
    let r = TxReceipt::from_outcome(&out.txs[0], 7);
    assert_eq!(r.layer, Some(7));
    let json = serde_json::to_value(&r).expect("serializes");
    assert!(json["status"].is_string(), "{json}");
}

#[test]
fn a_reward_overflow_leaves_the_layer_unapplied() {
    let a = key(40);
    let mut vm = spawned(&a, SMH);
    let before = vm.accounts().clone();
    let txs = vec![wallet_spend(&a, addr(&key(41)), 1, 1, 1, &GENESIS)];
    let err = vm.apply_layer(8, &txs, |_| vec![(addr(&a), u64::MAX)]);
    assert_eq!(err, Err(VmError::RewardOverflow(addr(&a))));
    assert_eq!(vm.accounts(), &before);
}

#[test]
fn receipts_render_codes() {
    let k = key(42);
    let mut vm = vm_with(&[(&k, SMH)]);
    let o = vm.apply_tx(
        &wallet_spend(&k, Address::default(), 1, 0, 1, &GENESIS),
        1,
        u64::MAX,
    );
    let r = TxReceipt::from_outcome(&o, 1);
    assert_eq!(r.status, TxStatus::Ineffective);
    assert_eq!(r.reason.as_ref().map(|r| r.code.as_str()), Some("malformed"));
    let back: TxReceipt = serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
    assert_eq!(back, r);
    assert_eq!(TxReceipt::pending(o.id).status, TxStatus::Pending);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Σ balances before = Σ after + fees, whatever mix of valid and invalid spends runs.
    #[test]
    fn balances_are_conserved(
        ops in proptest::collection::vec((0usize..4, 0usize..5, 0u64..4 * SMH, 0u64..4, 0u64..3, any::<bool>()), 1..40),
    ) {
        let keys: Vec<SigningKey> = (50u8..54).map(key).collect();
        let funded: Vec<(&SigningKey, u64)> = keys.iter().map(|k| (k, 5 * SMH)).collect();
        let mut vm = vm_with(&funded);
        let mut txs: Vec<Vec<u8>> = keys.iter().take(3).map(|k| wallet_self_spawn(k, 0, 1, &GENESIS)).collect();
        for (from, to, amount, nonce, price, good_sig) in ops {
            let dest = if to == 4 { Address::default() } else { addr(&keys[to]) };
            let genesis = if good_sig { GENESIS } else { [0u8; 20] };
            txs.push(wallet_spend(&keys[from], dest, amount, nonce, price, &genesis));
        }
        let before = vm.accounts().total_balance();
        // Apply as two layers: one by one, then as a block.
        let half = txs.len() / 2;
        let mut fees = 0u128;
        for raw in &txs[..half] {
            fees += u128::from(vm.apply_tx(raw, 1, u64::MAX).fee);
        }
        let out = vm.apply_layer(2, &txs[half..], |_| Vec::new()).expect("no credits");
        fees += u128::from(out.fees);
        prop_assert_eq!(before, vm.accounts().total_balance() + fees);
    }
}
