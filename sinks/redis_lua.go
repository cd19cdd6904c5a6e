package sinks

// redisWriteScript is the Lua script behind every keyed write of the Redis
// writer: it writes a batch of entries in one EVALSHA, each only if it is
// newer than what the key holds, and publishes exactly the entries it
// applied. It is loaded once (SCRIPT LOAD at Open) and called by its SHA1;
// after a server restart the writer sees NOSCRIPT, loads it again and
// repeats the calls that were refused.
//
// Call: EVALSHA sha numkeys KEY... TTLMS (MODE CHANNEL VALUE)...
//
//   - TTLMS is the expiry of feature keys in milliseconds.
//   - MODE "f": a feature cache key (features:{symbol}:realtime), written with
//     PX TTLMS; "w": the latest window result of a spec (window:{spec}:{symbol}),
//     no expiry; "p": publish only (pattern matches, news), no key. Each "f"
//     and "w" entry takes the next KEY in order.
//
// The reply has one element per entry: 1 written and published (or
// published, for "p"), 2 duplicate (the key holds these very bytes:
// nothing done), 3 stale (the key holds a newer version: nothing done), or
// the error of GET or SET on that key (WRONGTYPE when something else owns
// the key), which does not stop the other entries.
//
// The version is read from the JSON values themselves, so that GET returns
// exactly the JSON object and a key needs no companion:
//
//   - features: ("ts", "seq") — event time first, then the input sequence.
//     The first `"ts":` of the object is its ts field (the symbol before it is
//     an escaped JSON string, in which a '"' is always preceded by '\'), and
//     "seq" is the last field (the encoder puts it there).
//   - windows: ("end", timing rank early < on_time < late, "count"): a later
//     window is newer; of one window, its final pane is newer than its early
//     panes and its late re-firings newer than both, each late re-firing
//     holding one trade more than the one before.
//
// Two different values with the same version (a count window whose
// consecutive chunks share their first and last timestamps; two sources
// with equal ts and seq) are resolved by the later write winning: a live
// output is never dropped for it, at the price that a replay of such a pair
// passes through the older one. Integers are compared as decimal strings
// (sign, length, then two exact halves), because nanosecond timestamps do not
// fit in the double that Lua's numbers are.
const redisWriteScript = `
local function cmpint(a, b)
  if a == nil or b == nil then return 1 end
  if a == b then return 0 end
  local na, nb = string.byte(a, 1) == 45, string.byte(b, 1) == 45
  if na ~= nb then
    if na then return -1 end
    return 1
  end
  if na then a, b = string.sub(a, 2), string.sub(b, 2) end
  local r
  if #a ~= #b then
    if #a < #b then r = -1 else r = 1 end
  else
    local s = #a - 9
    if s < 1 then s = 1 end
    local ha, hb = tonumber(string.sub(a, 1, s - 1)) or 0, tonumber(string.sub(b, 1, s - 1)) or 0
    if ha == hb then
      ha, hb = tonumber(string.sub(a, s)), tonumber(string.sub(b, s))
    end
    if ha < hb then r = -1 else r = 1 end
  end
  if na then r = -r end
  return r
end

local rank = {early = 0, on_time = 1, late = 2}

local function newer(mode, new, old)
  if new == old then return 0 end
  local c
  if mode == 'f' then
    c = cmpint(string.match(new, '"ts":(%-?%d+)'), string.match(old, '"ts":(%-?%d+)'))
    if c == 0 then
      c = cmpint(string.match(new, '"seq":(%d+)}$'), string.match(old, '"seq":(%d+)}$'))
    end
  else
    c = cmpint(string.match(new, '"end":(%-?%d+)'), string.match(old, '"end":(%-?%d+)'))
    if c == 0 then
      local rn = rank[string.match(new, '"timing":"([%a_]+)"}$')] or 3
      local ro = rank[string.match(old, '"timing":"([%a_]+)"}$')] or -1
      if rn < ro then c = -1 elseif rn > ro then c = 1 end
    end
    if c == 0 then
      c = cmpint(string.match(new, '"count":(%d+)'), string.match(old, '"count":(%d+)'))
    end
  end
  if c == 0 then return 1 end
  return c
end

local ttl = ARGV[1]
local res = {}
local k = 0
local n = (#ARGV - 1) / 3
for i = 1, n do
  local mode, ch, val = ARGV[3*i - 1], ARGV[3*i], ARGV[3*i + 1]
  if mode == 'p' then
    redis.call('PUBLISH', ch, val)
    res[i] = 1
  else
    k = k + 1
    local key = KEYS[k]
    local old = redis.pcall('GET', key)
    if type(old) == 'table' and old.err then
      res[i] = old
    else
      local c = 1
      if old then c = newer(mode, val, old) end
      if c > 0 then
        local r
        if mode == 'f' then
          r = redis.pcall('SET', key, val, 'PX', ttl)
        else
          r = redis.pcall('SET', key, val)
        end
        if type(r) == 'table' and r.err then
          res[i] = r
        else
          redis.call('PUBLISH', ch, val)
          res[i] = 1
        end
      elseif c == 0 then
        res[i] = 2
      else
        res[i] = 3
      end
    end
  end
end
return res
`
