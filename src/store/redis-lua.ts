// The Redis store's Lua scripts (each runs atomically on the node holding the store's keys) and
// the constants they share with src/store/redis.ts.

/*
 * Key layout. Every key carries the hash tag {PREFIX}, so that on Redis Cluster they all live in one
 * slot and the Lua scripts (multi-key) are allowed. The queue is one stream per lane (queue:p0,
 * queue:p1, and queue itself for the last lane, the one stream of earlier versions, whose entries
 * are so still served), each with one consumer group shared by all replicas; acked entries are
 * deleted, so the sum of the XLENs is the queue depth.
 */
export const INTAKE_LUA = `
-- KEYS[1..3]: the lanes' streams; KEYS[4..]: dedupe keys
-- ARGV[1]: ttl ms; ARGV[2]: max queue depth (0: none); ARGV[3]: max share of maxmemory (0: none)
-- ARGV[4..3+n]: each item's lane (0-2); ARGV[4+n..]: payloads. Alerts no rule matches never come
-- here (splitUnmatched in store.ts): no key of theirs may fill Redis and stop intake.
local n = #KEYS - 3
local maxq = tonumber(ARGV[2])
if maxq > 0 then
  local depth = redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[2]) + redis.call('XLEN', KEYS[3])
  if depth + n > maxq then return {-1, depth, maxq} end
end
local share = tonumber(ARGV[3])
if share > 0 then
  local info = redis.call('INFO', 'memory')
  local max = tonumber(string.match(info, 'maxmemory:(%d+)') or '0')
  local used = tonumber(string.match(info, 'used_memory:(%d+)') or '0')
  if max > 0 and used >= max * share then return {-2, used, max} end
end
local queued = 0
for i = 1, n do
  if redis.call('SET', KEYS[3 + i], '1', 'NX', 'PX', ARGV[1]) then
    redis.call('XADD', KEYS[1 + tonumber(ARGV[3 + i])], '*', 'a', ARGV[3 + n + i])
    queued = queued + 1
  end
end
return {queued}`;

/*
 * One non-blocking take, lane by lane: in each, the entries idle past the claim time (a crashed
 * replica's) with their delivery counts, then new ones; the next lane only while short of COUNT.
 * Replies a flat list: lane, id, payload, deliveries, lane, id, ...
 */
export const CONSUME_LUA = `
-- KEYS[1..3]: the lanes' streams; ARGV[1]: group; ARGV[2]: consumer; ARGV[3]: count; ARGV[4]: claim idle ms
local out = {}
local left = tonumber(ARGV[3])
local function push(lane, e, deliveries)
  local f = e[2]
  local payload = ''
  for j = 1, #f, 2 do if f[j] == 'a' then payload = f[j + 1] end end
  out[#out + 1] = lane
  out[#out + 1] = e[1]
  out[#out + 1] = payload
  out[#out + 1] = deliveries
end
for lane = 1, #KEYS do
  if left <= 0 then break end
  local claimed = redis.call('XAUTOCLAIM', KEYS[lane], ARGV[1], ARGV[2], ARGV[4], '0-0', 'COUNT', left)
  for _, e in ipairs(claimed[2]) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      local p = redis.call('XPENDING', KEYS[lane], ARGV[1], e[1], e[1], 1)
      push(lane - 1, e, (p[1] and p[1][4]) or 2)
      left = left - 1
    end
  end
  if left > 0 then
    local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', KEYS[lane], '>')
    if r then
      for _, e in ipairs(r[1][2]) do
        push(lane - 1, e, 1)
        left = left - 1
      end
    end
  end
end
return out`;

// The acks of handled events, lane by lane, in one script (it was MULTI, XACK, XDEL, EXEC: four
// commands on the client): acked and deleted from the stream, atomically.
export const ACK_LUA = `
-- KEYS[1..3]: the lanes' streams; ARGV[1]: group; then lane by lane: how many ids, and the ids
local i = 2
for lane = 1, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  local j = 0
  while j < n do
    local ids = {}
    for k = 1, math.min(n - j, 1000) do ids[k] = ARGV[i + j + k - 1] end
    redis.call('XACK', KEYS[lane], ARGV[1], unpack(ids))
    redis.call('XDEL', KEYS[lane], unpack(ids))
    j = j + #ids
  end
  i = i + n
end
return 1`;

// Fencing tokens only grow: at least the previous token + 1 and at least Redis' clock in ms, so a
// fence key that expired (FENCE_TTL_FACTOR times the lock's TTL after its last use) starts again
// above every token handed out before.
export const LOCK_ACQUIRE_LUA = `
-- KEYS[1]: lock; KEYS[2]: fence counter; ARGV[1]: owner; ARGV[2]: ttl ms; ARGV[3]: fence ttl ms
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, now)
redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. string.format('%.0f', token), 'PX', ARGV[2])
return token`;

export const LOCK_RENEW_LUA = `
-- KEYS[1]: lock; KEYS[2]: fence counter; ARGV[1]: owner|token; ARGV[2]: ttl ms; ARGV[3]: fence ttl ms
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])`;

export const LOCK_RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/*
 * Records: the JSON in one hash; `meta` (id -> "state|createdAt|target") says which indexes hold an
 * id; sorted sets by time, per state and per target (score createdAt), so the scheduler's listing
 * by state and pruning read only the records of the states they ask for. `states` names every
 * state seen. `held` (id -> a count) names the records that hold something in the cluster only they
 * can undo (the store's `holding`): pruning and the record cap skip them. The scripts derive index
 * key names from `meta` and the prefixes they are given: all carry the same hash tag, so on
 * Cluster they share the script's slot.
 */
export const PUT_RECORD_LUA = `
-- KEYS[1]: records; KEYS[2]: meta; KEYS[3]: by-time; KEYS[4]: states; KEYS[5]: state index; KEYS[6]: target index; KEYS[7]: held
-- KEYS[8..] (optional): write only while these keys are absent; -1 (nothing written) when one exists
-- ARGV[1]: id; ARGV[2]: json; ARGV[3]: createdAt; ARGV[4]: state; ARGV[5]: target; ARGV[6]: state index prefix; ARGV[7]: target index prefix
-- ARGV[8]: what the record holds (0: nothing; above 0: kept, see the store's \`holding\`)
-- ARGV[9] (optional): write only while the stored record is in this state; -1 (nothing written) when it is not, or absent
for i = 8, #KEYS do if redis.call('EXISTS', KEYS[i]) == 1 then return -1 end end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[9] and (not old or string.match(old, '^([^|]*)|') ~= ARGV[9]) then return -1 end
if old then
  local state, target = string.match(old, '^([^|]*)|[^|]*|(.*)$')
  if state ~= ARGV[4] then redis.call('ZREM', ARGV[6] .. state, ARGV[1]) end
  if target ~= ARGV[5] then redis.call('ZREM', ARGV[7] .. target, ARGV[1]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4] .. '|' .. ARGV[3] .. '|' .. ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
if tonumber(ARGV[8]) > 0 then redis.call('HSET', KEYS[7], ARGV[1], ARGV[8]) else redis.call('HDEL', KEYS[7], ARGV[1]) end
return redis.call('HLEN', KEYS[2])`;

export const PRUNE_LUA = `
-- KEYS[1]: records; KEYS[2]: meta; KEYS[3]: by-time; KEYS[4]: states; KEYS[5]: held (never pruned)
-- ARGV[1]: before (exclusive); ARGV[2]: at most this many; ARGV[3]: state index prefix; ARGV[4]: target index prefix; ARGV[5..]: states kept
local keep = {}
for i = 5, #ARGV do keep[ARGV[i]] = true end
local limit = tonumber(ARGV[2])
local n = 0
for _, state in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if not keep[state] then
    local index = ARGV[3] .. state
    local skipped = 0
    repeat
      local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. ARGV[1], 'LIMIT', skipped, limit - n)
      for _, id in ipairs(ids) do
        if redis.call('HEXISTS', KEYS[5], id) == 1 then
          skipped = skipped + 1
        else
          local meta = redis.call('HGET', KEYS[2], id)
          if meta then redis.call('ZREM', ARGV[4] .. string.match(meta, '^[^|]*|[^|]*|(.*)$'), id) end
          redis.call('HDEL', KEYS[1], id)
          redis.call('HDEL', KEYS[2], id)
          redis.call('ZREM', KEYS[3], id)
          redis.call('ZREM', index, id)
          n = n + 1
        end
      end
    until #ids == 0 or n >= limit
    if n >= limit then return n end
  end
end
return n`;

// Sliding-window reservation (the budgets): every key checked, then the member added to every
// key, in one script, so replicas reserving at once never pass a limit together.
export const RESERVE_EVENTS_LUA = `
-- KEYS: event keys; ARGV[1]: member; ARGV[2]: at (ms); ARGV[3]: window ms; ARGV[4]: '1' to record
-- the member, '0' to check only; ARGV[5]: the holders to name with a refusal, since (ms; '' for
-- none); ARGV[6]: at most that many; ARGV[6 + i]: the limit of KEYS[i]
local at = tonumber(ARGV[2])
local since = at - tonumber(ARGV[3])
for i, k in ipairs(KEYS) do
  if ARGV[4] == '1' then redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. since) end
  local n = redis.call('ZCOUNT', k, since, '+inf')
  -- the member's own event leaves the count only when it is in it (a check trims nothing: an
  -- older one of its own may still be in the key, and made room it does not have)
  local own = redis.call('ZSCORE', k, ARGV[1])
  if own and tonumber(own) >= since then n = n - 1 end
  if n >= tonumber(ARGV[6 + i]) then
    local out = {i, n}
    if ARGV[5] ~= '' and tonumber(ARGV[6]) > 0 then
      for _, m in ipairs(redis.call('ZREVRANGEBYSCORE', k, '+inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[6]))) do out[#out + 1] = m end
    end
    return out
  end
end
if ARGV[4] ~= '1' then return {0, 0} end
for _, k in ipairs(KEYS) do
  redis.call('ZADD', k, at, ARGV[1])
  redis.call('PEXPIRE', k, ARGV[3])
end
return {0, 0}`;

// Leased slots (the concurrency limit): a sorted set per pool, member -> lease expiry in Redis'
// clock (ms), so every replica sees one clock. Expired leases go first, then the member takes (or
// renews) a slot if it holds one or fewer than max are held. Reply: {1} taken, {0, holders...} refused.
export const SLOT_ACQUIRE_LUA = `
-- KEYS[1]: the pool; ARGV[1]: member; ARGV[2]: max; ARGV[3]: ttl ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local out = {0}
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do out[#out + 1] = m end
  return out
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1}`;

export const SLOT_RENEW_LUA = `
-- KEYS[1]: the pool; ARGV[1]: member; ARGV[2]: ttl ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`;

// The pool's live leases, by Redis' clock (as SLOT_ACQUIRE_LUA drops the expired ones), changing nothing.
export const SLOT_HOLDERS_LUA = `
-- KEYS[1]: the pool
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')`;

export const MEMORY_LUA = `
-- KEYS[1]: any key of this store (routes the call to its node on Cluster)
local info = redis.call('INFO', 'memory')
return {string.match(info, 'used_memory:(%d+)') or '0', string.match(info, 'maxmemory:(%d+)') or '0', string.match(info, 'maxmemory_policy:(%S+)') or ''}`;

export const FENCE_TTL_FACTOR = 2;
/** Records indexed as above (3: with `held`); records written by an earlier version are indexed once, on first use. */
export const RECORDS_LAYOUT = '3';

/** Reply errors that mean "the store is not usable right now", not "the command was wrong". */
export const TRANSIENT_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|NOREPLICAS|MISCONF)/;
/** Redis at maxmemory with noeviction refuses writes with OOM: the store is full, not broken. */
export const FULL_REPLY = /^OOM /;

