//! Merkle trees as `spacemeshos/merkle-tree` builds them, for both PoET trees:
//!
//! - the **membership tree** (the round's statement): leaves are the registered challenges in
//!   node-ID order, internal node = `blake3(0x01 ‖ left ‖ right)`;
//! - the **work tree** ([`super::work`]): leaves are labels, internal node =
//!   `sha256(statement ‖ left ‖ right)`.
//!
//! Shape rules shared by both (spec/devnet.md §1.4, merkle-tree `Tree.RootAndProof`):
//!
//! - a level with an odd node out pairs it with a 32-byte all-zero padding node (the padding
//!   is the zero *node*, not the hash of a zero subtree), so a tree of `n > 1` leaves has
//!   height `⌈log₂ n⌉`;
//! - a single leaf is the root (no hashing); no leaves, no root.
//!
//! Proofs are *partial trees*: the minimal list of sibling nodes, in the order the library's
//! incremental tree emits them (post-order: a subtree's own proof nodes first, then the sibling
//! that holds no proven leaf). For one leaf this is the sibling path, bottom up, padding nodes
//! included. [`validate_partial_tree`] is the library's `ValidatePartialTreeWithParkingSnapshots`.

/// A tree node (or leaf): 32 bytes.
pub type Node = [u8; 32];

/// The padding node paired with an odd node out.
pub const PADDING: Node = [0u8; 32];

/// The membership tree's internal node: `blake3(0x01 ‖ left ‖ right)` (poet
/// `shared.HashMembershipTreeNode`).
pub fn membership_node(left: &Node, right: &Node) -> Node {
    let mut h = blake3::Hasher::new();
    h.update(&[0x01]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// The membership root (the round's statement) over `leaves` in the order given (the server
/// orders them by node ID). `None` for no leaves.
pub fn membership_root(leaves: &[[u8; 32]]) -> Option<[u8; 32]> {
    levels(leaves, membership_node)
        .last()
        .and_then(|top| top.first().copied())
}

/// The sibling path of leaf `index`, bottom up (padding nodes included), as ATX v1 carries it in
/// `MembershipProof.Nodes`. Empty for a single leaf; `None` if `index` is out of range.
pub fn membership_proof(leaves: &[[u8; 32]], index: usize) -> Option<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let levels = levels(leaves, membership_node);
    let mut path = Vec::with_capacity(levels.len().saturating_sub(1));
    let mut i = index;
    for level in &levels[..levels.len() - 1] {
        path.push(level.get(i ^ 1).copied().unwrap_or(PADDING));
        i >>= 1;
    }
    Some(path)
}

/// Folds `nodes` (the sibling path, bottom up) from `leaf` at `index` and compares with `root`.
///
/// As merkle-tree's `ValidatePartialTree` with one leaf (what go-spacemesh runs on an ATX's
/// membership proof): the path length sets the height, and bits of `index` above it are not
/// looked at.
pub fn verify_membership(leaf: &[u8; 32], index: u64, nodes: &[[u8; 32]], root: &[u8; 32]) -> bool {
    let mut cur = *leaf;
    let mut i = index;
    for sibling in nodes {
        cur = if i & 1 == 1 {
            membership_node(sibling, &cur)
        } else {
            membership_node(&cur, sibling)
        };
        i >>= 1;
    }
    cur == *root
}

/// Every level of the padded tree over `leaves`, leaves first, root level (one node) last.
/// Empty for no leaves.
pub fn levels(leaves: &[Node], hash: impl Fn(&Node, &Node) -> Node) -> Vec<Vec<Node>> {
    if leaves.is_empty() {
        return Vec::new();
    }
    let mut out = vec![leaves.to_vec()];
    while let Some(level) = out.last().filter(|l| l.len() > 1) {
        let next = level
            .chunks(2)
            .map(|pair| hash(&pair[0], pair.get(1).unwrap_or(&PADDING)))
            .collect();
        out.push(next);
    }
    out
}

/// Height of the padded tree over `n` leaves: 0 for one leaf, `⌈log₂ n⌉` otherwise.
pub fn tree_height(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

/// The partial-tree proof for the leaves at `sorted_indices` (ascending, distinct, in range)
/// over the tree given by its [`levels`]: the proof nodes in the order merkle-tree's proving
/// tree emits them (and its validator reads them).
pub fn partial_tree_proof(levels: &[Vec<Node>], sorted_indices: &[u64]) -> Vec<Node> {
    let mut out = Vec::new();
    if let Some(height) = levels.len().checked_sub(1) {
        if !sorted_indices.is_empty() {
            emit(levels, height, 0, sorted_indices, &mut out);
        }
    }
    out
}

/// Whether the subtree at (`height`, `index`) covers one of `sorted`.
fn covers(height: usize, index: u64, sorted: &[u64]) -> bool {
    let lo = index.checked_shl(height as u32).unwrap_or(u64::MAX);
    let hi = (index + 1).checked_shl(height as u32).unwrap_or(u64::MAX);
    let first = sorted.partition_point(|&x| x < lo);
    sorted.get(first).is_some_and(|&x| x < hi)
}

/// Post-order emission for a subtree that covers at least one proven leaf.
fn emit(levels: &[Vec<Node>], height: usize, index: u64, sorted: &[u64], out: &mut Vec<Node>) {
    if height == 0 {
        return;
    }
    let (l, r) = (2 * index, 2 * index + 1);
    let (lp, rp) = (covers(height - 1, l, sorted), covers(height - 1, r, sorted));
    if lp {
        emit(levels, height - 1, l, sorted, out);
    }
    if rp {
        emit(levels, height - 1, r, sorted, out);
    }
    let child = |i: u64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| levels[height - 1].get(i))
            .copied()
    };
    if !lp {
        out.push(child(l).unwrap_or(PADDING));
    }
    if !rp {
        out.push(child(r).unwrap_or(PADDING));
    }
}

/// For one proven leaf: the node parked at each height when it was added (`None` where no
/// node was parked), bottom up. Its non-empty entries are the left siblings the label was
/// computed over.
pub type ParkingSnapshot = Vec<Option<Node>>;

/// What a partial tree rebuilt to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltTree {
    pub root: Node,
    /// Height of `root` (leaves are height 0).
    pub height: u32,
    /// One snapshot per proven leaf, in index order.
    pub snapshots: Vec<ParkingSnapshot>,
    /// Leaves that were never reached because the proof nodes ran out first.
    pub unused_leaves: usize,
}

/// Why a partial tree cannot be rebuilt at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartialTreeError {
    #[error("{leaves} leaves but {indices} indices")]
    CountMismatch { leaves: usize, indices: usize },
    #[error("at least one leaf is required")]
    NoLeaves,
    #[error("leaf indices are not sorted ascending and distinct")]
    UnsortedIndices,
}

/// Rebuilds the root from proven leaves and proof nodes, recording the parking snapshots (the
/// algorithm of merkle-tree `ValidatePartialTreeWithParkingSnapshots`). As in the library, the
/// climb stops when the proof nodes run out; the caller compares root and height.
pub fn validate_partial_tree(
    sorted_indices: &[u64],
    leaves: &[Node],
    nodes: &[Node],
    hash: impl Fn(&Node, &Node) -> Node,
) -> Result<RebuiltTree, PartialTreeError> {
    if sorted_indices.len() != leaves.len() {
        return Err(PartialTreeError::CountMismatch {
            leaves: leaves.len(),
            indices: sorted_indices.len(),
        });
    }
    if leaves.is_empty() {
        return Err(PartialTreeError::NoLeaves);
    }
    if sorted_indices.windows(2).any(|w| w[0] >= w[1]) {
        return Err(PartialTreeError::UnsortedIndices);
    }
    let mut v = Validator {
        indices: sorted_indices,
        leaves,
        nodes,
        next_leaf: 0,
        next_node: 0,
        hash: &hash,
    };
    let (height, root, snapshots) = v.calc_root(u32::MAX);
    Ok(RebuiltTree {
        root,
        height,
        snapshots,
        unused_leaves: leaves.len() - v.next_leaf,
    })
}

struct Validator<'a, H> {
    indices: &'a [u64],
    leaves: &'a [Node],
    nodes: &'a [Node],
    next_leaf: usize,
    next_node: usize,
    hash: &'a H,
}

/// Whether the node at (`height`, `index`) is an ancestor of (or is) leaf `leaf`.
fn is_ancestor_of_leaf(height: u32, index: u64, leaf: u64) -> bool {
    leaf.checked_shr(height).unwrap_or(0) == index
}

impl<H: Fn(&Node, &Node) -> Node> Validator<'_, H> {
    /// Climbs from the next leaf until height `stop_at` (or until the proof nodes run out).
    /// Callers guarantee a next leaf exists.
    fn calc_root(&mut self, stop_at: u32) -> (u32, Node, Vec<ParkingSnapshot>) {
        let mut index = self.indices[self.next_leaf];
        let mut active = self.leaves[self.next_leaf];
        self.next_leaf += 1;
        let mut height = 0u32;
        let mut snapshots: Vec<ParkingSnapshot> = vec![Vec::new()];
        while height != stop_at {
            let sibling_index = index ^ 1;
            let mut sub_snapshots = Vec::new();
            let sibling = match self.indices.get(self.next_leaf) {
                Some(&next) if is_ancestor_of_leaf(height, sibling_index, next) => {
                    let (_, node, sub) = self.calc_root(height);
                    sub_snapshots = sub;
                    node
                }
                _ => match self.nodes.get(self.next_node) {
                    Some(node) => {
                        self.next_node += 1;
                        *node
                    }
                    None => break,
                },
            };
            if index & 1 == 1 {
                for s in &mut snapshots {
                    s.push(Some(sibling));
                }
                active = (self.hash)(&sibling, &active);
            } else {
                for s in &mut snapshots {
                    s.push(None);
                }
                for mut s in sub_snapshots {
                    s.push(Some(active));
                    snapshots.push(s);
                }
                active = (self.hash)(&active, &sibling);
            }
            index >>= 1;
            height += 1;
        }
        (height, active, snapshots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf(i: u8) -> Node {
        [i; 32]
    }

    fn leaves(n: usize) -> Vec<Node> {
        (0..n).map(|i| leaf(i as u8 + 1)).collect()
    }

    fn h(l: &Node, r: &Node) -> Node {
        let mut buf = vec![0x01];
        buf.extend_from_slice(l);
        buf.extend_from_slice(r);
        *blake3::hash(&buf).as_bytes()
    }

    #[test]
    fn roots_by_hand() {
        let [a, b, c, d, e] = [leaf(1), leaf(2), leaf(3), leaf(4), leaf(5)];
        let z = [0u8; 32];
        assert_eq!(membership_root(&[]), None);
        assert_eq!(membership_root(&[a]), Some(a), "a single leaf is the root");
        assert_eq!(membership_root(&[a, b]), Some(h(&a, &b)));
        assert_eq!(membership_root(&[a, b, c]), Some(h(&h(&a, &b), &h(&c, &z))));
        assert_eq!(membership_root(&[a, b, c, d]), Some(h(&h(&a, &b), &h(&c, &d))));
        // Padding is the zero node at every level, not a hash of zero subtrees.
        assert_eq!(
            membership_root(&[a, b, c, d, e]),
            Some(h(&h(&h(&a, &b), &h(&c, &d)), &h(&h(&e, &z), &z)))
        );
    }

    #[test]
    fn membership_node_is_blake3_with_0x01() {
        let digest = membership_node(&[0u8; 32], &[0u8; 32]);
        let mut input = [0u8; 65];
        input[0] = 1;
        assert_eq!(digest, *blake3::hash(&input).as_bytes());
        assert_ne!(digest, *blake3::hash(&[0u8; 64]).as_bytes());
    }

    #[test]
    fn proofs_by_hand() {
        let [a, b, c, d, e] = [leaf(1), leaf(2), leaf(3), leaf(4), leaf(5)];
        let z = [0u8; 32];
        let l5 = [a, b, c, d, e];
        assert_eq!(membership_proof(&[a], 0), Some(vec![]));
        assert_eq!(membership_proof(&[a], 1), None);
        assert_eq!(membership_proof(&[a, b, c], 2), Some(vec![z, h(&a, &b)]));
        assert_eq!(
            membership_proof(&l5, 4),
            Some(vec![z, z, h(&h(&a, &b), &h(&c, &d))])
        );
        assert_eq!(
            membership_proof(&l5, 1),
            Some(vec![a, h(&c, &d), h(&h(&e, &z), &z)])
        );
    }

    #[test]
    fn every_index_verifies_and_tampering_fails() {
        for n in [1usize, 2, 3, 5, 7, 8, 9, 16, 17] {
            let ls = leaves(n);
            let root = membership_root(&ls).expect("root");
            for i in 0..n {
                let path = membership_proof(&ls, i).expect("path");
                assert_eq!(path.len() as u32, tree_height(n as u64));
                assert!(verify_membership(&ls[i], i as u64, &path, &root), "n={n} i={i}");
                for j in 0..n {
                    if j != i {
                        assert!(
                            !verify_membership(&ls[i], j as u64, &path, &root),
                            "n={n} i={i} j={j}"
                        );
                    }
                }
                for k in 0..path.len() {
                    let mut bad = path.clone();
                    bad[k][7] ^= 1;
                    assert!(!verify_membership(&ls[i], i as u64, &bad, &root));
                }
                let mut other = ls[i];
                other[0] ^= 0x80;
                assert!(!verify_membership(&other, i as u64, &path, &root));
            }
        }
    }

    #[test]
    fn heights() {
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 8, 9, 150].map(tree_height),
            [0, 0, 1, 2, 2, 3, 3, 4, 8]
        );
        assert_eq!(tree_height(u64::MAX), 64);
    }

    #[test]
    fn partial_tree_for_one_leaf_is_the_sibling_path() {
        let ls = leaves(11);
        let lv = levels(&ls, membership_node);
        for i in 0..11 {
            let path = membership_proof(&ls, i).expect("path");
            assert_eq!(partial_tree_proof(&lv, &[i as u64]), path);
        }
    }

    #[test]
    fn partial_tree_rejects_bad_input() {
        let ls = leaves(4);
        assert_eq!(
            validate_partial_tree(&[0, 1], &ls[..1], &[], membership_node),
            Err(PartialTreeError::CountMismatch {
                leaves: 1,
                indices: 2
            })
        );
        assert_eq!(
            validate_partial_tree(&[], &[], &[], membership_node),
            Err(PartialTreeError::NoLeaves)
        );
        assert_eq!(
            validate_partial_tree(&[1, 1], &ls[..2], &[], membership_node),
            Err(PartialTreeError::UnsortedIndices)
        );
    }

    /// merkle-tree's proving tree, transcribed step by step (`AddLeaf` merging parked nodes,
    /// then `RootAndProof` padding on the fly), as the oracle for the proof-node order.
    fn library_root_and_proof(leaves: &[Node], proven: &[u64]) -> (Node, Vec<Node>) {
        #[derive(Clone, Copy)]
        struct N {
            v: Node,
            on_path: bool,
        }
        let mut layers: Vec<Option<N>> = vec![None];
        let mut proof = Vec::new();
        let parent = |l: N, r: N| N {
            v: membership_node(&l.v, &r.v),
            on_path: l.on_path || r.on_path,
        };
        for (i, leaf) in leaves.iter().enumerate() {
            let mut n = N {
                v: *leaf,
                on_path: proven.contains(&(i as u64)),
            };
            let mut h = 0;
            loop {
                match layers[h].take() {
                    None => {
                        layers[h] = Some(n);
                        break;
                    }
                    Some(l) => {
                        let p = parent(l, n);
                        if p.on_path {
                            if !l.on_path {
                                proof.push(l.v);
                            }
                            if !n.on_path {
                                proof.push(n.v);
                            }
                        }
                        n = p;
                        h += 1;
                        if layers.len() == h {
                            layers.push(None);
                        }
                    }
                }
            }
        }
        let pad = N {
            v: PADDING,
            on_path: false,
        };
        let mut eph: Option<N> = None;
        for (h, parked) in layers.iter().enumerate() {
            if h == layers.len() - 1 && eph.is_none() {
                return (parked.expect("top layer holds the root").v, proof);
            }
            let (l, r) = match (*parked, eph) {
                (Some(p), Some(e)) => (p, e),
                (Some(p), None) => (p, pad),
                (None, Some(e)) => (e, pad),
                (None, None) => continue,
            };
            let p = parent(l, r);
            if p.on_path {
                if !l.on_path {
                    proof.push(l.v);
                }
                if !r.on_path {
                    proof.push(r.v);
                }
            }
            eph = Some(p);
        }
        (eph.expect("non-empty tree").v, proof)
    }

    #[test]
    fn proof_nodes_come_in_the_library_order() {
        for n in [1usize, 2, 3, 5, 6, 8, 13, 33] {
            let ls = leaves(n);
            let lv = levels(&ls, membership_node);
            let sets: Vec<Vec<u64>> = vec![
                vec![0],
                vec![(n - 1) as u64],
                (0..n as u64).step_by(3).collect(),
                (0..n as u64).filter(|i| i % 4 == 1 || i % 5 == 0).collect(),
                (0..n as u64).collect(),
            ];
            for idx in sets.into_iter().filter(|s| !s.is_empty()) {
                let (root, nodes) = library_root_and_proof(&ls, &idx);
                assert_eq!(Some(root), membership_root(&ls), "n={n}");
                assert_eq!(partial_tree_proof(&lv, &idx), nodes, "n={n} idx={idx:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn membership_round_trips(n in 1usize..70, seed: u64, pick in 0usize..1000) {
            let ls: Vec<Node> = (0..n)
                .map(|i| *blake3::hash(&[seed.to_le_bytes(), (i as u64).to_le_bytes()].concat()).as_bytes())
                .collect();
            let i = pick % n;
            let root = membership_root(&ls).expect("root");
            let path = membership_proof(&ls, i).expect("path");
            prop_assert!(verify_membership(&ls[i], i as u64, &path, &root));
            if n > 1 {
                let j = (i + 1 + pick % (n - 1)) % n;
                prop_assert!(!verify_membership(&ls[i], j as u64, &path, &root));
            }
        }

        #[test]
        fn partial_trees_rebuild_the_root(n in 1usize..90, mask: u128) {
            let ls = leaves(n);
            let lv = levels(&ls, membership_node);
            let mut idx: Vec<u64> = (0..n as u64).filter(|i| mask >> (i % 128) & 1 == 1).collect();
            if idx.is_empty() {
                idx.push(0);
            }
            let proven: Vec<Node> = idx.iter().map(|&i| ls[i as usize]).collect();
            let nodes = partial_tree_proof(&lv, &idx);
            prop_assert_eq!(&nodes, &library_root_and_proof(&ls, &idx).1);
            let rebuilt = validate_partial_tree(&idx, &proven, &nodes, membership_node).expect("valid input");
            prop_assert_eq!(rebuilt.root, membership_root(&ls).expect("root"));
            prop_assert_eq!(rebuilt.height, tree_height(n as u64));
            prop_assert_eq!(rebuilt.unused_leaves, 0);
            prop_assert_eq!(rebuilt.snapshots.len(), idx.len());
        }
    }
}
