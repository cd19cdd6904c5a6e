package sinks

// redisWriteScript is the Lua script behind every keyed write of the Redis
// writer: it writes a batch of entries in one EVALSHA, each only if it is
// newer than what the key holds, and publishes exactly the entries it
// applied. It is loaded once (SCRIPT LOAD at Open) and called by its SHA1;
// after a server restart the writer sees NOSCRIPT, loads it again and
// repeats the calls that were refused.
//
// Call: EVALSHA sha numkeys KEY... TTLMS LAYOUT ENTRY...
//
//   - TTLMS is the expiry of feature keys in milliseconds.
//   - LAYOUT has one byte per entry, its mode, which says what the entry's
//     arguments are:
//   - "f" VALUE TSFROM TSTO TS: a feature cache key
//     (features:{symbol}:realtime, the next KEY), written with PSETEX TTLMS
//     and published on features:{symbol} (the key without ":realtime").
//     TS is the value's "ts", TSFROM the offset of `"ts":` in the value
//     and TSTO = TSFROM+25 (room for the longest int64 and a comma).
//   - "w" CHANNEL VALUE END RANK COUNT: the latest window result of a spec
//     (window:{spec}:{symbol}, the next KEY), no expiry; END and COUNT are
//     the value's, RANK its timing's rank (early 0, on_time 1, late 2).
//   - "p" CHANNEL VALUE: publish only (pattern matches, news), no key.
//
// The reply is an array: a string with one byte per entry, '1' written and
// published (or published, for "p"), '2' duplicate (the key holds these very
// bytes: nothing done), '3' stale (the key holds a newer version: nothing
// done), 'E' the error of a command on that key (WRONGTYPE when something
// else owns the key), which does not stop the other entries; then the
// errors, one per 'E' in order.
//
// The version of a key's value is read from its JSON, so that GET returns
// exactly the JSON object and a key needs no companion; the new value's
// version comes as arguments, so the script never parses it.
//
//   - features: ("ts", "seq") — event time first, then the input sequence.
//     The key's symbol fixes the bytes before "ts", the object's second
//     field, so the stored ts sits at TSFROM: GETRANGE reads those 26 bytes
//     (not the whole value), and only when it holds the same ts (or is not
//     laid out as the contract says) does the script GET the whole value, to
//     tell a duplicate (the same bytes) and compare "seq", the last field.
//     The first `"ts":` of such a value is its ts field (the symbol before it
//     is an escaped JSON string, in which a '"' is always preceded by '\').
//   - windows: ("end", timing rank early < on_time < late, "count"): a later
//     window is newer; of one window, its final pane is newer than its early
//     panes and its late re-firings newer than both, each late re-firing
//     holding one trade more than the one before.
//
// Two different values with the same version (a count window whose
// consecutive chunks share their first and last timestamps; two sources
// with equal ts and seq) are resolved by the later write winning: a live
// output is never dropped for it, at the price that a replay of such a pair
// passes through the older one. Integers are compared exactly: two
// timestamps whose doubles differ are ordered by them (rounding to a double
// keeps the order), those whose doubles are equal as decimal strings (sign,
// length, then two exact halves), because nanosecond timestamps do not fit
// in the double that Lua's numbers are.
//
// A command's reply is a string, false (GET of a missing key) or a table
// (a status {ok=...} or an error {err=...}); `r.err` reads nil on a string
// (the string library is its index), which spares a call of type() per
// command.
const redisWriteScript = `
local find, sub, byte, match = string.find, string.sub, string.byte, string.match

local function cmpint(a, b)
  if a == nil or b == nil then return 1 end
  if a == b then return 0 end
  local na, nb = byte(a, 1) == 45, byte(b, 1) == 45
  if na ~= nb then
    if na then return -1 end
    return 1
  end
  if na then a, b = sub(a, 2), sub(b, 2) end
  local r
  if #a ~= #b then
    if #a < #b then r = -1 else r = 1 end
  else
    local s = #a - 9
    if s < 1 then s = 1 end
    local ha, hb = tonumber(sub(a, 1, s - 1)) or 0, tonumber(sub(b, 1, s - 1)) or 0
    if ha == hb then
      ha, hb = tonumber(sub(a, s)), tonumber(sub(b, s))
    end
    if ha < hb then r = -1 else r = 1 end
  end
  if na then r = -r end
  return r
end

-- fwhole compares a feature value with the whole one its key holds.
local function fwhole(key, val, ts)
  local old = redis.pcall('GET', key)
  if not old then return 1 end
  if old.err then return nil, old end
  if old == val then return 0 end
  local c = cmpint(ts, match(old, '"ts":(%-?%d+)'))
  if c == 0 then
    c = cmpint(match(val, '"seq":(%d+)}$', #val - 26), match(old, '"seq":(%d+)}$', #old - 26))
    if c == 0 then c = 1 end
  end
  return c
end

local rank = {early = 0, on_time = 1, late = 2}

local ttl, layout = ARGV[1], ARGV[2]
local res, out = {}, {''}
local k, j = 0, 3
for i = 1, #layout do
  local m = byte(layout, i)
  local c, err, key, ch, val
  if m == 102 then -- f
    k = k + 1
    key, val = KEYS[k], ARGV[j]
    local ts = ARGV[j + 3]
    local r = redis.pcall('GETRANGE', key, ARGV[j + 1], ARGV[j + 2])
    j = j + 4
    if r.err then
      err = r
    elseif r == '' then
      c = 1
    else
      local _, _, o = find(r, '^"ts":(%-?%d+),')
      if o and o ~= ts then
        local d = ts - o
        if d > 0 then c = 1 elseif d < 0 then c = -1 else c = cmpint(ts, o) end
      else
        c, err = fwhole(key, val, ts)
      end
    end
    if c and c > 0 then
      local w = redis.pcall('PSETEX', key, ttl, val)
      if w.err then err = w else ch = sub(key, 1, -10) end
    end
  elseif m == 119 then -- w
    k = k + 1
    key, ch, val = KEYS[k], ARGV[j], ARGV[j + 1]
    local fin, rk, cnt = ARGV[j + 2], ARGV[j + 3], ARGV[j + 4]
    j = j + 5
    local old = redis.pcall('GET', key)
    if not old then
      c = 1
    elseif old.err then
      err = old
    elseif old == val then
      c = 0
    else
      c = cmpint(fin, match(old, '"end":(%-?%d+)'))
      if c == 0 then
        local ro, rn = rank[match(old, '"timing":"([%a_]+)"}$')] or -1, tonumber(rk)
        if rn < ro then c = -1 elseif rn > ro then c = 1 end
      end
      if c == 0 then
        c = cmpint(cnt, match(old, '"count":(%d+)'))
        if c == 0 then c = 1 end
      end
    end
    if c and c > 0 then
      local w = redis.pcall('SET', key, val)
      if w.err then err = w end
    end
  else -- p
    ch, val = ARGV[j], ARGV[j + 1]
    j = j + 2
    c = 1
  end
  if err then
    res[i] = 'E'
    out[#out + 1] = err
  elseif c > 0 then
    redis.call('PUBLISH', ch, val)
    res[i] = '1'
  elseif c == 0 then
    res[i] = '2'
  else
    res[i] = '3'
  end
end
out[1] = table.concat(res)
return out
`
