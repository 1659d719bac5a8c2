"""The Lua scripts of :mod:`actors.cluster.redis`, one per atomic operation (text only: this
module imports nothing). Each starts with :data:`PRELUDE`; their arguments are in ARGV (key
names are built from the prefix, ARGV[1]: see the key layout in :mod:`actors.cluster.redis`).
A Lua ``false`` is Redis's nil."""

from __future__ import annotations

# Every script: ARGV[1] is the key prefix; `now` is the server's clock in milliseconds.
PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# ARGV: P, kind, id, ttl_ms, urls, load, capacity, draining -> draining as stored (0 | 1):
# a drain asked from outside (SET_DRAINING, the field `drain`) outlasts the member's own word.
HEARTBEAT = """
local k = P .. ':m:' .. ARGV[2] .. ':' .. ARGV[3]
local draining = ARGV[8]
if redis.call('HGET', k, 'drain') == '1' then draining = '1' end
redis.call('HSET', k, 'urls', ARGV[5], 'load', ARGV[6], 'capacity', ARGV[7],
           'draining', draining, 'beat', now)
redis.call('PEXPIRE', k, ARGV[4])
redis.call('ZADD', P .. ':mz:' .. ARGV[2], now + tonumber(ARGV[4]), ARGV[3])
return tonumber(draining)
"""

# ARGV: P, kind, id -> 1 | 0 (no such member): it drains from now on (until it deregisters
# or expires: the flag lives in its registration, so a new process under the id starts fresh).
SET_DRAINING = """
local z = P .. ':mz:' .. ARGV[2]
local k = P .. ':m:' .. ARGV[2] .. ':' .. ARGV[3]
local deadline = redis.call('ZSCORE', z, ARGV[3])
if not deadline or tonumber(deadline) <= now or redis.call('EXISTS', k) == 0 then return 0 end
redis.call('HSET', k, 'drain', '1', 'draining', '1')
return 1
"""

# ARGV: P, kind, id
DEREGISTER = """
redis.call('DEL', P .. ':m:' .. ARGV[2] .. ':' .. ARGV[3])
redis.call('ZREM', P .. ':mz:' .. ARGV[2], ARGV[3])
return 1
"""

# ARGV: P, kind -> {{id, urls, load, capacity, draining, expires_in_ms, beat_age_ms}...}
MEMBERS = """
local z = P .. ':mz:' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
local ids = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #ids, 2 do
  local id = ids[i]
  local h = redis.call('HMGET', P .. ':m:' .. ARGV[2] .. ':' .. id,
                       'urls', 'load', 'capacity', 'draining', 'beat')
  if h[3] then
    local load = h[2]
    if ARGV[2] == 'node' then load = redis.call('SCARD', P .. ':nl:' .. id) end
    local age = now - (tonumber(h[5]) or now)
    out[#out + 1] = {id, h[1], tostring(load), h[3], h[4], tostring(tonumber(ids[i + 1]) - now),
                     tostring(age)}
  end
end
return out
"""

# ARGV: P, call_id, sid, prefer, lease_ms, keep_ms, meta
CLAIM_INBOUND = """
local ck = P .. ':c:' .. ARGV[2]
local prior = redis.call('HMGET', ck, 'sid', 'node', 'ended')
if prior[1] then
  local meta = redis.call('HGET', P .. ':l:' .. prior[1], 'meta') or '{}'
  return {'dup', prior[1], prior[2], meta, prior[3] and '1' or '0'}
end
local z = P .. ':mz:node'
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
local best, bshare, bpref = nil, nil, nil
for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do
  local h = redis.call('HMGET', P .. ':m:node:' .. id, 'capacity', 'draining')
  local cap = tonumber(h[1])
  if cap and cap > 0 and h[2] ~= '1' then
    local load = redis.call('SCARD', P .. ':nl:' .. id)
    if load < cap then
      local share, pref = load / cap, (id == ARGV[4]) and 0 or 1
      if best == nil or share < bshare or (share == bshare and (pref < bpref
          or (pref == bpref and id < best))) then
        best, bshare, bpref = id, share, pref
      end
    end
  end
end
if best == nil then return {'full'} end
local lk, keep = P .. ':l:' .. ARGV[3], ARGV[6]
local deadline = now + tonumber(ARGV[5])
redis.call('HSET', lk, 'node', best, 'epoch', 1, 'deadline', deadline, 'meta', ARGV[7],
           'state', '', 'call', ARGV[2])
redis.call('PEXPIRE', lk, keep)
redis.call('ZADD', P .. ':lz', deadline, ARGV[3])
redis.call('SADD', P .. ':nl:' .. best, ARGV[3])
redis.call('PEXPIRE', P .. ':nl:' .. best, keep)
redis.call('HSET', ck, 'sid', ARGV[3], 'node', best)
redis.call('PEXPIRE', ck, keep)
redis.call('RPUSH', P .. ':in:' .. best, ARGV[3])
redis.call('PEXPIRE', P .. ':in:' .. best, keep)
return {'ok', ARGV[3], best, ARGV[7], '0'}
"""

# ARGV: P, node, first_sid, max -> {{sid, epoch, meta, state, call}...}
ADOPT = """
local sids = {ARGV[3]}
local more = redis.call('LPOP', P .. ':in:' .. ARGV[2], ARGV[4])
if more then for _, s in ipairs(more) do sids[#sids + 1] = s end end
local out = {}
for _, sid in ipairs(sids) do
  local h = redis.call('HMGET', P .. ':l:' .. sid, 'node', 'epoch', 'meta', 'state', 'call')
  if h[1] == ARGV[2] then out[#out + 1] = {sid, h[2], h[3], h[4] or '', h[5] or ''} end
end
return out
"""

# ARGV: P, sid, node, lease_ms, keep_ms, epoch, meta, state, call -> 1 | 0 (another's)
ACQUIRE = """
local lk, keep = P .. ':l:' .. ARGV[2], ARGV[5]
local owner = redis.call('HGET', lk, 'node')
if owner and owner ~= ARGV[3] then return 0 end
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', lk, 'node', ARGV[3], 'epoch', ARGV[6], 'deadline', deadline,
           'meta', ARGV[7], 'state', ARGV[8], 'call', ARGV[9])
redis.call('PEXPIRE', lk, keep)
redis.call('ZADD', P .. ':lz', deadline, ARGV[2])
redis.call('SADD', P .. ':nl:' .. ARGV[3], ARGV[2])
redis.call('PEXPIRE', P .. ':nl:' .. ARGV[3], keep)
return 1
"""

# ARGV: P, node, lease_ms, keep_ms, sid... -> {missing, lost}
RENEW = """
local missing, lost = {}, {}
local deadline, keep = now + tonumber(ARGV[3]), ARGV[4]
for i = 5, #ARGV do
  local sid = ARGV[i]
  local lk = P .. ':l:' .. sid
  local owner = redis.call('HGET', lk, 'node')
  if not owner then missing[#missing + 1] = sid
  elseif owner ~= ARGV[2] then lost[#lost + 1] = sid
  else
    redis.call('HSET', lk, 'deadline', deadline)
    redis.call('PEXPIRE', lk, keep)
    redis.call('ZADD', P .. ':lz', deadline, sid)
  end
end
redis.call('PEXPIRE', P .. ':nl:' .. ARGV[2], keep)
return {missing, lost}
"""

# ARGV: P, sid, node, data -> 1 | 0
SAVE_STATE = """
local lk = P .. ':l:' .. ARGV[2]
if redis.call('HGET', lk, 'node') ~= ARGV[3] then return 0 end
redis.call('HSET', lk, 'state', ARGV[4])
return 1
"""

# ARGV: P, sid, node -> 1 | 0
RELEASE = """
local lk = P .. ':l:' .. ARGV[2]
local h = redis.call('HMGET', lk, 'node', 'call')
if h[1] ~= ARGV[3] then return 0 end
redis.call('DEL', lk)
redis.call('ZREM', P .. ':lz', ARGV[2])
redis.call('SREM', P .. ':nl:' .. ARGV[3], ARGV[2])
local ck = P .. ':c:' .. (h[2] or '')
if h[2] and h[2] ~= '' and redis.call('EXISTS', ck) == 1 then
  redis.call('HSET', ck, 'ended', now)
end
return 1
"""

# ARGV: P, limit -> {sid...}
ORPHANS = """
local out = {}
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':lz', '-inf', now, 'LIMIT', 0, ARGV[2])) do
  if redis.call('EXISTS', P .. ':l:' .. sid) == 1 then out[#out + 1] = sid
  else redis.call('ZREM', P .. ':lz', sid) end
end
return out
"""

# ARGV: P, node, room, scan, lease_ms, keep_ms, grace_ms -> {{sid, old node, epoch, meta, state,
# call}...}: the orphans this node takes over now, at most `room`. Of the oldest `scan` orphans,
# each goes (on paper) to the candidate with the smallest share of its capacity once it has it
# (this node on a tie): the healthy nodes with room, not draining, that own no orphan (a node
# whose lease expired is not renewing). This node takes the ones that fall to it; the others'
# shares are left to their own scans, which compute the same split of what is left. An orphan
# expired over `grace_ms` ago is taken by whoever scans (its candidate did not: frozen, cut off).
TAKE_ORPHANS = """
local me, keep = ARGV[2], ARGV[6]
local mine = redis.call('HMGET', P .. ':m:node:' .. me, 'capacity', 'draining')
local mycap = tonumber(mine[1])
if not mycap or mine[2] == '1' then return {} end
local myload = redis.call('SCARD', P .. ':nl:' .. me)
local room = math.min(tonumber(ARGV[3]), mycap - myload)
if room <= 0 then return {} end
local found, owners = {}, {}
local scan = redis.call('ZRANGEBYSCORE', P .. ':lz', '-inf', now, 'LIMIT', 0, ARGV[4])
for _, sid in ipairs(scan) do
  local h = redis.call('HMGET', P .. ':l:' .. sid, 'node', 'deadline')
  if not h[1] then redis.call('ZREM', P .. ':lz', sid)
  elseif h[1] ~= me and tonumber(h[2]) <= now then
    found[#found + 1] = {sid, now - tonumber(h[2])}
    owners[h[1]] = true
  end
end
if #found == 0 then return {} end
local z = P .. ':mz:node'
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
local ids, loads, caps = {}, {}, {}
for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do
  local h = redis.call('HMGET', P .. ':m:node:' .. id, 'capacity', 'draining')
  local cap = tonumber(h[1])
  if id ~= me and cap and cap > 0 and h[2] ~= '1' and not owners[id] then
    ids[#ids + 1] = id
    loads[id], caps[id] = redis.call('SCARD', P .. ':nl:' .. id), cap
  end
end
local out, grace = {}, tonumber(ARGV[7])
for _, orphan in ipairs(found) do
  if #out >= room then break end
  local best, bshare = me, (myload + 1) / mycap
  if orphan[2] <= grace then
    for _, id in ipairs(ids) do
      if loads[id] < caps[id] then
        local share = (loads[id] + 1) / caps[id]
        if share < bshare or (share == bshare and best ~= me and id < best) then
          best, bshare = id, share
        end
      end
    end
  end
  if best ~= me then
    loads[best] = loads[best] + 1
  else
    myload = myload + 1
    local sid = orphan[1]
    local lk = P .. ':l:' .. sid
    local h = redis.call('HMGET', lk, 'node', 'epoch', 'meta', 'state', 'call')
    local epoch = tonumber(h[2]) + 1
    local deadline = now + tonumber(ARGV[5])
    redis.call('HSET', lk, 'node', me, 'epoch', epoch, 'deadline', deadline)
    redis.call('PEXPIRE', lk, keep)
    redis.call('ZADD', P .. ':lz', deadline, sid)
    redis.call('SREM', P .. ':nl:' .. h[1], sid)
    redis.call('SADD', P .. ':nl:' .. me, sid)
    out[#out + 1] = {sid, h[1], tostring(epoch), h[3] or '{}', h[4] or '', h[5] or ''}
  end
end
if #out > 0 then redis.call('PEXPIRE', P .. ':nl:' .. me, keep) end
return out
"""

# ARGV: P, sid, node, lease_ms, keep_ms -> {'ok', old node, epoch, meta, state, call} | {why}
CLAIM_ORPHAN = """
local me = redis.call('HMGET', P .. ':m:node:' .. ARGV[3], 'capacity', 'draining')
local cap = tonumber(me[1])
if not cap then return {'unregistered'} end
if me[2] == '1' then return {'draining'} end
if redis.call('SCARD', P .. ':nl:' .. ARGV[3]) >= cap then return {'full'} end
local lk, keep = P .. ':l:' .. ARGV[2], ARGV[5]
local h = redis.call('HMGET', lk, 'node', 'epoch', 'deadline', 'meta', 'state', 'call')
if not h[1] then
  redis.call('ZREM', P .. ':lz', ARGV[2])
  return {'gone'}
end
if h[1] == ARGV[3] or tonumber(h[3]) > now then return {'live'} end
local epoch = tonumber(h[2]) + 1
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', lk, 'node', ARGV[3], 'epoch', epoch, 'deadline', deadline)
redis.call('PEXPIRE', lk, keep)
redis.call('ZADD', P .. ':lz', deadline, ARGV[2])
redis.call('SREM', P .. ':nl:' .. h[1], ARGV[2])
redis.call('SADD', P .. ':nl:' .. ARGV[3], ARGV[2])
redis.call('PEXPIRE', P .. ':nl:' .. ARGV[3], keep)
return {'ok', h[1], tostring(epoch), h[4] or '{}', h[5] or '', h[6] or ''}
"""

# ARGV: P, owner ('' = whoever holds it), sid, fields (JSON object), sid, fields... -> {1 | 0...}
# Merges the fields into each lease's meta (a session's progress, written by its node; or its
# gateway, moved by whichever node answered the call's redirect). 0: no such lease, or (owner
# given) not that node's.
MERGE_META = """
local out = {}
for i = 3, #ARGV, 2 do
  local lk = P .. ':l:' .. ARGV[i]
  local owner = redis.call('HGET', lk, 'node')
  if owner and (ARGV[2] == '' or owner == ARGV[2]) then
    local ok, meta = pcall(cjson.decode, redis.call('HGET', lk, 'meta') or '{}')
    if not ok or type(meta) ~= 'table' then meta = {} end
    for k, v in pairs(cjson.decode(ARGV[i + 1])) do meta[k] = v end
    redis.call('HSET', lk, 'meta', cjson.encode(meta))
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
