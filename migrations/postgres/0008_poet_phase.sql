-- The PoET phase an identity smeshes in: the phase shift (ms) of the PoETs it registers with. Set
-- by the smeshing driver when it first places the identity (spreading the fleet's proving load
-- over the phases) and when a missed round moves it to another phase. NULL: not placed yet.
ALTER TABLE identities ADD COLUMN poet_phase_ms BIGINT CHECK (poet_phase_ms IS NULL OR poet_phase_ms >= 0);
