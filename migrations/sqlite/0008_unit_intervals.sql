-- A unit's own reporting intervals in minutes (D11, D12); NULL: the deployment's.
ALTER TABLE units ADD COLUMN first_report_minutes INTEGER;
ALTER TABLE units ADD COLUMN follow_up_minutes INTEGER;
