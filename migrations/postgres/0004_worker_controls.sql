-- Operator controls of workers, and why a proving request failed.
--
-- What an operator decides about a rig from the coordinator, kept across restarts of either side:
-- `paused` (1: it keeps what it holds, gets nothing new; POST /api/v1/workers/{id}/pause and
-- /resume) and `device_settings`, JSON `{"cpu_init": bool, "disabled_gpus": [index, ...]}`
-- (PUT /api/v1/workers/{id}/devices): devices the planner must not use, whatever the rig reports.
ALTER TABLE workers ADD COLUMN paused BIGINT NOT NULL DEFAULT 0 CHECK (paused IN (0, 1));
ALTER TABLE workers ADD COLUMN device_settings TEXT;

-- Why a proving request failed (for example its deadline passed without a verified proof).
ALTER TABLE proving_requests ADD COLUMN failure TEXT;
