-- A per-identity revision of its file placements and recorded init progress. Triggers bump it in
-- the same transaction as every change to identity_files or init_ranges, so the reconcile loop can
-- keep the fleet's files in memory and re-read only the identities whose revision moved (a fleet
-- of 10,000 identities has 640,000 file rows; reading them all every pass took seconds).
ALTER TABLE identities ADD COLUMN files_rev INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER identity_files_rev_insert AFTER INSERT ON identity_files BEGIN
    UPDATE identities SET files_rev = files_rev + 1 WHERE id = NEW.identity_id;
END;
CREATE TRIGGER identity_files_rev_update AFTER UPDATE ON identity_files BEGIN
    UPDATE identities SET files_rev = files_rev + 1 WHERE id IN (OLD.identity_id, NEW.identity_id);
END;
CREATE TRIGGER identity_files_rev_delete AFTER DELETE ON identity_files BEGIN
    UPDATE identities SET files_rev = files_rev + 1 WHERE id = OLD.identity_id;
END;
CREATE TRIGGER init_ranges_rev_insert AFTER INSERT ON init_ranges BEGIN
    UPDATE identities SET files_rev = files_rev + 1 WHERE id = NEW.identity_id;
END;
CREATE TRIGGER init_ranges_rev_update AFTER UPDATE ON init_ranges BEGIN
    UPDATE identities SET files_rev = files_rev + 1 WHERE id IN (OLD.identity_id, NEW.identity_id);
END;
CREATE TRIGGER init_ranges_rev_delete AFTER DELETE ON init_ranges BEGIN
    UPDATE identities SET files_rev = files_rev + 1 WHERE id = OLD.identity_id;
END;
