"""The console directory's index maintenance: one Lua script that re-derives a user's index entries.

Every store method that writes a field the console sorts, filters or searches on (a user's name,
username, email, last use; a mailbox's state, provider, address, last run, last success, activation)
sends :func:`reindex` in the same MULTI as its write. The script reads the user's and the mailbox's
hashes as they are after the write, removes the entries recorded for the user in
``P dir:{org}:rows`` and adds the new ones, so the index is a function of the hashes at every
commit and cannot drift. It touches about 30 members, each O(log n): tens of microseconds.

Sort entries are members ``{key}\\x00{uid}`` (score 0, ordered by ZRANGEBYLEX) of
``P dir:{org}:{sort}`` and of its per-state (``:s:{state}``) and per-provider (``:p:{provider}``)
copies. ``key`` is the folded (lowercase) text, a zero-padded number for times, or the ISO time of
the last run. Search terms are ``{term}\\x00{uid}`` in ``P dir:{org}:terms``: each term is the
folded text of a name or address from the start of one of its words (up to 64 bytes), so a prefix
range finds "acme" in ``ada@acme.example``. ``P dir:{org}:success`` / ``:fresh`` score running
mailboxes by their last success (0: never) / last success or activation, for the summary and digest.
"""

from __future__ import annotations

from typing import Any

SORTS = ("name", "username", "mailbox", "state", "provider", "last_run", "last_seen")
TERM_BYTES = 64
# Bytes of a sort key kept (the order of longer texts is decided by their first 200 bytes).
KEY_BYTES = 200

# ARGV[1]: key prefix; ARGV[2]: the org when known ('' if not: read from the hashes); ARGV[3..]: user
# ids. Returns how many are indexed now (a user whose hash is gone loses its entries).
REINDEX = """
local P = ARGV[1]
local hint = ARGV[2]
if hint == '' then hint = nil end
local SORTS = {@SORTS@}
local function j(v)
  if not v then return nil end
  local ok, x = pcall(cjson.decode, v)
  if ok and x ~= cjson.null then return x end
  return nil
end
-- Lowercase ASCII (Redis's Lua runs in the C locale) and Latin-1 capitals A-grave..Thorn (not x).
local function fold(s)
  s = string.lower(s)
  return (s:gsub('\\195([\\128-\\158])', function(c)
    local b = string.byte(c)
    if b == 151 then return nil end
    return '\\195' .. string.char(b + 32)
  end))
end
local function text(v) if type(v) == 'string' then return v end return '' end
local function num(v) return string.format('%020.6f', tonumber(v) or 0) end
local indexed = 0
for i = 3, #ARGV do
  local uid = ARGV[i]
  local u = redis.call('HMGET', P .. 'user:' .. uid, 'org_id', 'display_name', 'username', 'email', 'last_seen_at')
  local m = redis.call('HMGET', P .. 'mailbox:' .. uid, 'org_id', 'state', 'provider', 'address', 'last_run',
                       'caught_up_at', 'activated_at')
  local org = j(u[1]) or j(m[1]) or hint
  if org then
    local base = P .. 'dir:' .. org .. ':'
    local old = j(redis.call('HGET', base .. 'rows', uid))
    if old then
      for sort, member in pairs(old.m) do
        redis.call('ZREM', base .. sort, member)
        redis.call('ZREM', base .. sort .. ':s:' .. old.s, member)
        redis.call('ZREM', base .. sort .. ':p:' .. old.p, member)
      end
      for _, term in ipairs(old.t) do redis.call('ZREM', base .. 'terms', term .. '\\0' .. uid) end
      redis.call('ZREM', base .. 'success', uid)
      redis.call('ZREM', base .. 'fresh', uid)
      redis.call('HDEL', base .. 'rows', uid)
    end
    if u[1] then
      local state = text(j(m[2]))
      if state == '' then state = 'not_activated' end
      local provider = text(j(m[3]))
      if provider == '' then provider = 'none' end
      local last = j(m[5])
      local finished = ''
      if type(last) == 'table' then finished = text(last.finished_at) end
      local name, username, email, address = text(j(u[2])), text(j(u[3])), text(j(u[4])), text(j(m[4]))
      local keys = {name = fold(name), username = fold(username), mailbox = fold(address), state = state,
                    provider = text(j(m[3])), last_run = finished, last_seen = num(j(u[5]))}
      local members = {}
      for _, sort in ipairs(SORTS) do
        local member = string.sub(keys[sort], 1, @KEY_BYTES@) .. '\\0' .. uid
        members[sort] = member
        redis.call('ZADD', base .. sort, 0, member)
        redis.call('ZADD', base .. sort .. ':s:' .. state, 0, member)
        redis.call('ZADD', base .. sort .. ':p:' .. provider, 0, member)
      end
      local terms, seen = {}, {}
      for _, value in ipairs({name, username, email, address}) do
        local folded = fold(value)
        for pos in string.gmatch(folded, '()[%w\\128-\\255]+') do
          local term = string.sub(folded, pos, pos + @TERM_BYTES@ - 1)
          if not seen[term] then
            seen[term] = true
            terms[#terms + 1] = term
            redis.call('ZADD', base .. 'terms', 0, term .. '\\0' .. uid)
          end
        end
      end
      if state == 'running' then
        local success = tonumber(j(m[6])) or 0
        redis.call('ZADD', base .. 'success', success, uid)
        local since = success
        if since == 0 then since = tonumber(j(m[7])) or 0 end
        if since > 0 then redis.call('ZADD', base .. 'fresh', since, uid) end
      end
      redis.call('HSET', base .. 'rows', uid, cjson.encode({s = state, p = provider, m = members, t = terms}))
      indexed = indexed + 1
    end
  end
end
return indexed
""".replace("@SORTS@", ", ".join(f"'{s}'" for s in SORTS)).replace(
    "@KEY_BYTES@", str(KEY_BYTES)).replace("@TERM_BYTES@", str(TERM_BYTES))

# Which stored fields feed the index: a write of any other field needs no reindex.
USER_FIELDS = frozenset({"org_id", "display_name", "username", "email", "last_seen_at"})
MAILBOX_FIELDS = frozenset({"org_id", "state", "provider", "address", "last_run", "caught_up_at", "activated_at"})


def reindex(pipe: Any, prefix: str, *uids: str, org: str = "") -> None:
    """Queue the re-derivation of the users' index entries on ``pipe`` (a MULTI, after the write).

    EVAL with the text, not EVALSHA: inside MULTI a missing script would fail after the write was
    applied, and Redis caches the compiled script by its hash anyway.
    """
    pipe.eval(REINDEX, 0, prefix, org, *uids)


def fold(text: str) -> str:
    """Lowercase as the script does: ASCII and the Latin-1 capitals (so a search matches the index)."""
    return "".join(chr(ord(c) + 32) if ("A" <= c <= "Z" or ("\xc0" <= c <= "\xde" and c != "\xd7")) else c
                   for c in text)
