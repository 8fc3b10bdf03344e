//! The sequential work (spec/devnet.md §1.5): labels salted with the round's statement `x`,
//! chained through an incremental Merkle tree.
//!
//! ```text
//! label_hash(data) = S^depth,  S^1 = sha256(x ‖ data),  S^(i+1) = sha256(S^i)
//! node_hash(l, r)  = sha256(x ‖ l ‖ r)
//! label_i          = label_hash(u64be(i) ‖ non-empty parked nodes, lowest height first)
//! ```
//!
//! [`Work`] runs leaf by leaf so a server can pace it and stop it at a deadline.
//!
//! Memory: the real prover keeps only the parked nodes in memory and caches tree layers on disk.
//! Here every label is kept in memory (32 bytes a leaf: ≈1.6 MB for the ≈50k leaves of a devnet
//! round at 1,000 leaves/s), and the proof rebuilds the upper levels from them at the end (about
//! as much again, briefly). Fine at devnet sizes; a mainnet-sized round (~10¹¹ leaves) would need
//! the on-disk layer cache instead.

use sha2::{Digest, Sha256};

use super::tree::{Node, PADDING};

/// `label_hash(data)` for statement `x`, nested `depth` times (`depth` ≥ 1).
pub fn label_hash(statement: &[u8; 32], data: &[u8], depth: u32) -> Node {
    let mut h = Sha256::new();
    h.update(statement);
    h.update(data);
    let mut out: Node = h.finalize().into();
    for _ in 1..depth {
        out = Sha256::digest(out).into();
    }
    out
}

/// `node_hash(l, r) = sha256(x ‖ l ‖ r)`: an internal node of the work tree.
pub fn node_hash(statement: &[u8; 32], left: &Node, right: &Node) -> Node {
    let mut h = Sha256::new();
    h.update(statement);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The label of leaf `index` over the parked nodes it sees (lowest height first; empty
/// heights already skipped).
pub fn make_label<'a>(
    statement: &[u8; 32],
    index: u64,
    parked: impl IntoIterator<Item = &'a Node>,
    depth: u32,
) -> Node {
    let mut data = Vec::with_capacity(8 + 32 * 64);
    data.extend_from_slice(&index.to_be_bytes());
    for node in parked {
        data.extend_from_slice(node);
    }
    label_hash(statement, &data, depth)
}

/// The sequential work of one round: the incremental work tree and every label so far.
#[derive(Debug, Clone)]
pub struct Work {
    statement: [u8; 32],
    depth: u32,
    /// Parked node per height (a left child waiting for its right sibling).
    parked: Vec<Option<Node>>,
    labels: Vec<Node>,
}

impl Work {
    /// Starts the work for `statement` with the real label depth ([`super::LABEL_DEPTH`]).
    pub fn new(statement: [u8; 32]) -> Self {
        Self::with_depth(statement, super::LABEL_DEPTH)
    }

    /// Starts the work with another label depth (tests and experiments only: proofs verify
    /// only against the same depth).
    pub fn with_depth(statement: [u8; 32], depth: u32) -> Self {
        Work {
            statement,
            depth: depth.max(1),
            parked: Vec::new(),
            labels: Vec::new(),
        }
    }

    pub fn statement(&self) -> &[u8; 32] {
        &self.statement
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Leaves computed so far.
    pub fn leaf_count(&self) -> u64 {
        self.labels.len() as u64
    }

    /// Every label so far, in index order.
    pub fn labels(&self) -> &[Node] {
        &self.labels
    }

    /// The parked nodes the next leaf will be labelled over, lowest height first.
    pub fn parked_nodes(&self) -> impl Iterator<Item = &Node> {
        self.parked.iter().flatten()
    }

    /// Computes the next leaf (one label: `depth` SHA-256 applications) and returns its label.
    pub fn add_leaf(&mut self) -> Node {
        let index = self.leaf_count();
        let label = make_label(&self.statement, index, self.parked.iter().flatten(), self.depth);
        self.labels.push(label);
        let mut node = label;
        for slot in self.parked.iter_mut() {
            match slot.take() {
                Some(left) => node = node_hash(&self.statement, &left, &node),
                None => {
                    *slot = Some(node);
                    return label;
                }
            }
        }
        self.parked.push(Some(node));
        label
    }

    /// Computes up to `count` more leaves.
    pub fn run(&mut self, count: u64) {
        for _ in 0..count {
            self.add_leaf();
        }
    }

    /// Computes leaves until there are `target` of them (nothing if there already are).
    pub fn run_until(&mut self, target: u64) {
        self.run(target.saturating_sub(self.leaf_count()));
    }

    /// The root of the work tree so far, padded with zero nodes as merkle-tree's `Root` does it
    /// on the fly; `None` before the first leaf.
    pub fn root(&self) -> Option<Node> {
        let mut ephemeral: Option<Node> = None;
        let top = self.parked.len().checked_sub(1)?;
        for (height, slot) in self.parked.iter().enumerate() {
            if height == top && ephemeral.is_none() {
                return *slot;
            }
            ephemeral = match (slot, ephemeral) {
                (Some(p), Some(e)) => Some(node_hash(&self.statement, p, &e)),
                (Some(p), None) => Some(node_hash(&self.statement, p, &PADDING)),
                (None, Some(e)) => Some(node_hash(&self.statement, &e, &PADDING)),
                (None, None) => None,
            };
        }
        ephemeral
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::levels;
    use super::*;

    const X: [u8; 32] = [7u8; 32];

    #[test]
    fn label_hash_nests_sha256() {
        let mut once = Sha256::new();
        once.update(X);
        once.update(b"data");
        let s1: Node = once.finalize().into();
        assert_eq!(label_hash(&X, b"data", 1), s1);
        let s3: Node = Sha256::digest(Sha256::digest(s1)).into();
        assert_eq!(label_hash(&X, b"data", 3), s3);
        let mut s = s1;
        for _ in 1..400 {
            s = Sha256::digest(s).into();
        }
        assert_eq!(label_hash(&X, b"data", 400), s);
    }

    #[test]
    fn first_leaves_by_hand() {
        let d = 5;
        let mut w = Work::with_depth(X, d);
        assert_eq!(w.root(), None);
        let l0 = w.add_leaf();
        assert_eq!(l0, label_hash(&X, &0u64.to_be_bytes(), d));
        assert_eq!(w.root(), Some(l0));
        let l1 = w.add_leaf();
        assert_eq!(l1, label_hash(&X, &[&1u64.to_be_bytes()[..], &l0].concat(), d));
        let n01 = node_hash(&X, &l0, &l1);
        assert_eq!(w.root(), Some(n01));
        // Leaf 2 sees only the parked node at height 1.
        let l2 = w.add_leaf();
        assert_eq!(l2, label_hash(&X, &[&2u64.to_be_bytes()[..], &n01].concat(), d));
        assert_eq!(w.root(), Some(node_hash(&X, &n01, &node_hash(&X, &l2, &PADDING))));
        // Leaf 3 sees l2 (height 0) then n01 (height 1).
        let l3 = w.add_leaf();
        assert_eq!(
            l3,
            label_hash(&X, &[&3u64.to_be_bytes()[..], &l2, &n01].concat(), d)
        );
        assert_eq!(w.root(), Some(node_hash(&X, &n01, &node_hash(&X, &l2, &l3))));
        assert_eq!(w.labels(), &[l0, l1, l2, l3]);
    }

    #[test]
    fn incremental_root_matches_level_by_level() {
        let mut w = Work::with_depth(X, 2);
        for n in 1..=40u64 {
            w.add_leaf();
            let lv = levels(w.labels(), |l, r| node_hash(&X, l, r));
            assert_eq!(w.root(), lv.last().map(|top| top[0]), "n={n}");
        }
    }

    #[test]
    fn run_until_never_goes_back() {
        let mut w = Work::with_depth(X, 1);
        w.run_until(10);
        assert_eq!(w.leaf_count(), 10);
        w.run_until(4);
        assert_eq!(w.leaf_count(), 10);
        w.run(3);
        assert_eq!(w.leaf_count(), 13);
        assert_eq!(w.parked_nodes().count(), 3, "13 = 0b1101");
    }
}
