-- The queue's counts filtered by an appeal item, as index ranges. An appeal's items are
-- kept as one text (',item,item,', in the help page's order), so the counts' indexes
-- (0009, 0010) hold them sorted by that text, and a count of the appeals asking for
-- one item walked every entry whose text sorts before the first match: at 1,000,000
-- open appeals, 20-48 ms for the five states' counts of `reset_password` (every text
-- beginning with `change`, `clear`, `detach` or `other` comes first). Here each item has
-- a partial index holding only the open appeals that ask for it, by state, claim and
-- scenario, so a count reads only matches and stops at its cap (0.3-0.7 ms for the same
-- counts, every filter). A scenario with any claim is counted in two parts: the
-- unclaimed (a range) and the claimed (walked over the claimers to the cap). The store
-- names the index by the item (`appeals_item_<item>`) and writes the item's condition
-- exactly as here, so that SQLite may use it. An item added later needs its index here
-- too: a test counts every item under every filter.

CREATE INDEX appeals_item_retrieve_username ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,retrieve\_username,%' ESCAPE '\';
CREATE INDEX appeals_item_reset_password ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,reset\_password,%' ESCAPE '\';
CREATE INDEX appeals_item_change_secure_phone ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,change\_secure\_phone,%' ESCAPE '\';
CREATE INDEX appeals_item_change_security_email ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,change\_security\_email,%' ESCAPE '\';
CREATE INDEX appeals_item_detach_mfa ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,detach\_mfa,%' ESCAPE '\';
CREATE INDEX appeals_item_clear_security_questions ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,clear\_security\_questions,%' ESCAPE '\';
CREATE INDEX appeals_item_clear_ip_logon_mask ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,clear\_ip\_logon\_mask,%' ESCAPE '\';
CREATE INDEX appeals_item_other ON appeals (state, assignee, scenario)
    WHERE outcome IS NULL AND items LIKE '%,other,%' ESCAPE '\';
