-- Five questions analysts ask, against the read models (read-only).
-- Money columns are exact decimal TEXT written with exactly the currency's
-- minor digits ("1250.00", "999", "3.765"), so REPLACE(x, '.', '') read as an
-- INTEGER is the amount in minor units, exactly: sum those, never the TEXT
-- (SQLite would sum it as floating point).

-- 1. Receivables ageing by buyer: approved, unsettled invoices each seller is
--    owed, by days past due as of a date.
SELECT i.seller_organization_id                            AS seller,
       i.buyer_organization_id                             AS buyer,
       o.name                                              AS buyer_name,
       i.currency,
       CASE
         WHEN julianday('2026-12-06') <= julianday(i.due_date)      THEN 'not due'
         WHEN julianday('2026-12-06') - julianday(i.due_date) <= 30 THEN '1-30'
         WHEN julianday('2026-12-06') - julianday(i.due_date) <= 60 THEN '31-60'
         WHEN julianday('2026-12-06') - julianday(i.due_date) <= 90 THEN '61-90'
         ELSE '90+'
       END                                                 AS age,
       COUNT(*)                                            AS invoices,
       SUM(CAST(REPLACE(i.approved_amount, '.', '') AS INTEGER)) AS owed_minor
FROM invoices i
JOIN organizations o ON o.id = i.buyer_organization_id
WHERE i.status IN ('APPROVED', 'APPROVED_WITH_ADJUSTMENT', 'CANCELLATION_REQUESTED')
GROUP BY seller, buyer, buyer_name, i.currency, age
ORDER BY seller, buyer, age;

-- 2. Days sales outstanding per seller: the amount-weighted average number
--    of days from issue to settlement, over invoices settled in a period.
SELECT i.seller_organization_id AS seller,
       i.currency,
       COUNT(*)                 AS settled_invoices,
       ROUND(SUM((julianday(p.completed_at_utc) - julianday(i.issue_date))
                 * CAST(REPLACE(p.amount, '.', '') AS INTEGER))
             / SUM(CAST(REPLACE(p.amount, '.', '') AS INTEGER)), 1) AS dso_days
FROM invoices i
JOIN payments p ON p.id = i.payment_id AND p.status = 'COMPLETED'
WHERE p.completed_at_utc >= '2026-01-01' AND p.completed_at_utc < '2027-01-01'
GROUP BY seller, i.currency
ORDER BY dso_days DESC;

-- 3. Settlement volume per day and currency (each settlement counted once,
--    on the payee's side).
SELECT substr(created_at_utc, 1, 10)                    AS day,
       currency,
       COUNT(*)                                         AS settlements,
       SUM(CAST(REPLACE(amount, '.', '') AS INTEGER))   AS volume_minor
FROM transactions
WHERE type = 'SETTLEMENT_IN'
GROUP BY day, currency
ORDER BY day, currency;

-- 4. Every balance as it stood at a past moment: its last change at or before
--    then (balances opened later do not appear).
SELECT b.organization_id,
       b.currency,
       c.total_after     AS total,
       c.reserved_after  AS reserved,
       c.available_after AS available,
       c.frozen_after    AS frozen,
       c.at_utc          AS as_of_change
FROM balances b
JOIN balance_changes c ON c.balance_id = b.id
WHERE c.seq = (SELECT MAX(seq) FROM balance_changes
               WHERE balance_id = b.id AND at_utc <= '2026-12-31T23:59:59.999999Z')
ORDER BY b.organization_id, b.currency;

-- 5. Refunds against settlements: per settled payment, what was refunded,
--    what is pending, and what could still be.
SELECT p.id                                                                AS payment,
       p.invoice_id,
       p.payee_organization_id                                             AS refunded_by,
       p.currency,
       CAST(REPLACE(p.amount, '.', '') AS INTEGER)                          AS settled_minor,
       SUM(CASE WHEN r.status = 'APPROVED'
                THEN CAST(REPLACE(r.amount, '.', '') AS INTEGER) ELSE 0 END) AS refunded_minor,
       SUM(CASE WHEN r.status = 'PENDING'
                THEN CAST(REPLACE(r.amount, '.', '') AS INTEGER) ELSE 0 END) AS pending_minor,
       CAST(REPLACE(p.amount, '.', '') AS INTEGER)
         - CAST(REPLACE(p.refunded_amount, '.', '') AS INTEGER)             AS refundable_minor
FROM payments p
JOIN refunds r ON r.payment_id = p.id
WHERE p.status = 'COMPLETED'
GROUP BY p.id, p.invoice_id, p.payee_organization_id, p.currency, p.amount, p.refunded_amount
ORDER BY refunded_minor DESC;
