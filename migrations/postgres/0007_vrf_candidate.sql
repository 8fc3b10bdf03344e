-- The identity's best VRF candidate so far: init jobs report the best label of their range below
-- the VRF threshold; the coordinator checks it and keeps the smallest (spec/post.md: the smaller
-- 32-byte label wins, the lower index on a tie). vrf_label is its label as 64 lowercase hex
-- digits, so that text order is byte order. NULL with a vrf_nonce: imported from postcli metadata.
ALTER TABLE identities ADD COLUMN vrf_label TEXT CHECK (vrf_label IS NULL OR length(vrf_label) = 64);
