-- Outbound work (issue 18), part two: call lists worked by operators from a queue, the
-- admin's outcome codes, an outcome and note on every call (inbound too), scripts per
-- list, and daily targets per operator.

-- The admin's outcome codes, in the four languages. `effect` says what an outcome does
-- to a call-list item: 'done' (finished), 'retry_no_answer' / 'retry_busy' (again after
-- the list's retry delay, until its attempts run out), 'callback' (again at the time the
-- operator gives), 'wrong' (finished, the number is wrong). `reached`: the customer was
-- spoken to (the daily progress counts it).
CREATE TABLE call_outcomes (
    id           INTEGER PRIMARY KEY,
    code         TEXT NOT NULL UNIQUE,
    name_en      TEXT NOT NULL,
    name_ru      TEXT NOT NULL,
    name_uz      TEXT NOT NULL,
    name_uz_cyrl TEXT NOT NULL,
    effect       TEXT NOT NULL
                 CHECK (effect IN ('done', 'retry_no_answer', 'retry_busy', 'callback', 'wrong')),
    reached      INTEGER NOT NULL DEFAULT 0 CHECK (reached IN (0, 1)),
    position     INTEGER NOT NULL DEFAULT 0,
    active       INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);
INSERT INTO call_outcomes (code, name_en, name_ru, name_uz, name_uz_cyrl, effect, reached, position) VALUES
 ('reached',        'Reached',          'Дозвонились',       'Gaplashildi',          'Гаплашилди',          'done',            1, 1),
 ('no_answer',      'No answer',        'Не ответил',        'Javob bermadi',        'Жавоб бермади',       'retry_no_answer', 0, 2),
 ('busy',           'Busy',             'Занято',            'Band',                 'Банд',                'retry_busy',      0, 3),
 ('wrong_number',   'Wrong number',     'Неверный номер',    'Noto''g''ri raqam',    'Нотўғри рақам',       'wrong',           0, 4),
 ('call_back',      'Call back at…',    'Перезвонить в…',    'Qayta qo''ng''iroq…',  'Қайта қўнғироқ…',     'callback',        1, 5),
 ('not_interested', 'Not interested',   'Не интересно',      'Qiziqmaydi',           'Қизиқмайди',          'done',            1, 6),
 ('will_come_in',   'Will come in',     'Придёт',            'Keladi',               'Келади',              'done',            1, 7);

-- A call list: who to call (built once from a segment or a built-in source), how the
-- items are shared out, the retry rules and the script.
CREATE TABLE call_lists (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL,
    -- 'segment', 'missed', 'ready', 'overdue', 'warranty', 'import'.
    source            TEXT NOT NULL
                      CHECK (source IN ('segment', 'missed', 'ready', 'overdue', 'warranty', 'import')),
    -- The segment or import batch it was built from; days for 'ready'/'warranty'.
    source_ref        INTEGER,
    -- The branch whose list it is (NULL: the whole shop); items carry their own.
    branch_id         INTEGER REFERENCES branches(id) ON DELETE SET NULL,
    state             TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'closed')),
    -- 'pool' (anyone on the list takes the next), 'round_robin', 'branch', 'language'.
    assignment        TEXT NOT NULL DEFAULT 'pool'
                      CHECK (assignment IN ('pool', 'round_robin', 'branch', 'language')),
    -- Items an operator may finish from this list per shop day (0: no cap).
    daily_cap         INTEGER NOT NULL DEFAULT 0 CHECK (daily_cap >= 0),
    retry_no_answer_minutes INTEGER NOT NULL DEFAULT 120 CHECK (retry_no_answer_minutes >= 0),
    retry_busy_minutes      INTEGER NOT NULL DEFAULT 15 CHECK (retry_busy_minutes >= 0),
    max_attempts      INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    script_en         TEXT NOT NULL DEFAULT '',
    script_ru         TEXT NOT NULL DEFAULT '',
    script_uz         TEXT NOT NULL DEFAULT '',
    script_uz_cyrl    TEXT NOT NULL DEFAULT '',
    created_by        INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- The operators working a list; `branch_id` for assignment by branch (their branch on
-- this list; NULL: any).
CREATE TABLE call_list_agents (
    list_id   INTEGER NOT NULL REFERENCES call_lists(id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    branch_id INTEGER REFERENCES branches(id) ON DELETE SET NULL,
    PRIMARY KEY (list_id, user_id)
) WITHOUT ROWID;

-- One customer to call. `state`: 'pending' (waits for `next_at`), 'active' (taken by
-- `taken_by`), 'done' (an outcome finished it), 'failed' (attempts ran out, or a wrong
-- number). `assigned_to`: the operator the rules gave it to (NULL: anyone on the list).
CREATE TABLE call_list_items (
    id           INTEGER PRIMARY KEY,
    list_id      INTEGER NOT NULL REFERENCES call_lists(id) ON DELETE CASCADE,
    customer_id  INTEGER REFERENCES customers(id) ON DELETE SET NULL,
    phone        TEXT NOT NULL,
    -- What the item is about (the order ready, overdue, under warranty).
    order_id     INTEGER REFERENCES orders(id) ON DELETE SET NULL,
    branch_id    INTEGER REFERENCES branches(id) ON DELETE SET NULL,
    language     TEXT,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'active', 'done', 'failed')),
    assigned_to  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    taken_by     INTEGER REFERENCES users(id) ON DELETE SET NULL,
    taken_at     INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    outcome      TEXT,
    note         TEXT NOT NULL DEFAULT '',
    -- The last call placed for it (SIP Call-ID).
    call_id      TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- The queue: an operator's own due items, then the shared ones (assigned_to NULL), oldest
-- due first (the rowid after next_at orders equal times by id without a sort).
CREATE INDEX call_list_items_queue ON call_list_items(assigned_to, state, next_at);
CREATE INDEX call_list_items_list ON call_list_items(list_id, state);
CREATE INDEX call_list_items_taken ON call_list_items(taken_by, state);
CREATE INDEX call_list_items_call ON call_list_items(call_id) WHERE call_id IS NOT NULL;

-- Every outcome recorded: of a call-list item, or the wrap-up of any call (inbound too).
-- The call log row, the customer's timeline and the daily progress read it.
CREATE TABLE call_outcome_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    user_id     INTEGER REFERENCES users(id) ON DELETE SET NULL,
    outcome     TEXT NOT NULL,
    reached     INTEGER NOT NULL DEFAULT 0,
    note        TEXT NOT NULL DEFAULT '',
    -- ISO date (YYYY-MM-DD) or Unix seconds of a call back, when given.
    follow_up   INTEGER,
    call_id     TEXT,
    list_id     INTEGER REFERENCES call_lists(id) ON DELETE SET NULL,
    item_id     INTEGER REFERENCES call_list_items(id) ON DELETE SET NULL,
    customer_id INTEGER REFERENCES customers(id) ON DELETE SET NULL
);
CREATE INDEX call_outcome_log_user ON call_outcome_log(user_id, at);
CREATE INDEX call_outcome_log_call ON call_outcome_log(call_id) WHERE call_id IS NOT NULL;
CREATE INDEX call_outcome_log_customer ON call_outcome_log(customer_id, at);
CREATE INDEX call_outcome_log_list ON call_outcome_log(list_id, user_id, at);

-- Daily targets: user_id 0 is the default for every operator.
CREATE TABLE progress_targets (
    user_id       INTEGER PRIMARY KEY,
    calls         INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
    reached       INTEGER NOT NULL DEFAULT 0 CHECK (reached >= 0),
    talk_minutes  INTEGER NOT NULL DEFAULT 0 CHECK (talk_minutes >= 0),
    orders        INTEGER NOT NULL DEFAULT 0 CHECK (orders >= 0),
    payments      INTEGER NOT NULL DEFAULT 0 CHECK (payments >= 0)
);

-- Progress reads orders and payments by who made them and when.
CREATE INDEX orders_created_by ON orders(created_by, created_at);
CREATE INDEX payments_created_by ON payments(created_by, created_at);
CREATE INDEX calls_answered_user ON calls(answered_user_id, started_ms);
CREATE INDEX calls_from ON calls(from_number, started_ms);
