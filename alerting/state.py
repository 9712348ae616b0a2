"""Alert state in Redis, changed only by Lua scripts (atomic, so any number of replicas agree).

Three scripts carry the whole lifecycle:

``observe``  a batch of detections, each → confirmation window of its source (k of the last
             n windows), replay dedup, refresh of the alert it feeds, cross-modal
             corroboration, or a new alert. Idempotent: a replayed detection changes nothing.
``claim``    due timers (group_wait, repeat, resolve checks) with a lease, so exactly one
             replica evaluates an alert at a time and a dead replica's claims come back.
``commit``   a decision: alert fields, notification state and the outbox entries it
             produced, written only if the alert's ``version`` is still the one the decision
             was made on (compare-and-set; a concurrent detection makes the caller re-decide).

Keys (``P`` = the configured prefix). The scripts address keys they compute rather than
declare, which standalone Redis (the supported deployment) allows; on Redis Cluster put a
``{hash tag}`` in the prefix so every key lands in one slot::

    P:win:<sfp>     ZSET  confirmation window of one source (member "captured|score|detection")
    P:src:<sfp>     STR   fingerprint of the alert this source currently feeds
    P:alert:<fp>    HASH  one alert (see AlertSnapshot) + per-route notification state; its
                          ``alert_id`` names this incarnation (alerting/ids.py), never reused
    P:dets:<fp>     LIST  detection ids behind the alert, newest first (lineage)
    P:site:<site>   ZSET  active alerts of a site by last capture time (corroboration, inhibition)
    P:firing        ZSET  active alerts by creation time
    P:timers        ZSET  alert fingerprints by the time they next need a look
    P:wm            HASH  partition of ``detections`` → the time (ms) up to which what was written
                          to it has been observed; the least of them is the watermark that a
                          resolve waits for
    P:rep           HASH  "<site>|<source>" → "since|last" (ms, when written): the processor has
                          reported on the source (summary or detection) without a gap longer than
                          ``stale_after`` from ``since`` to ``last``. Only sources that sent a
                          score summary are tracked (silence is not absence, see lifecycle.py)
    P:ob:*, P:obq:* the outbox (alerting/outbox.py)

``sfp`` and ``fp`` are both fingerprints of (site, source, label); an alert keeps the
fingerprint of the source that confirmed it first, and a corroborating source of the other
modality feeds that alert instead of opening its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from alerting.config import AlertingSettings
from alerting.ids import uuid7
from skysentry.messages import Detection

_TIME = """
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
"""

OBSERVE = _TIME + r"""
-- ARGV: prefix, k, n, horizon_ms, corroboration_ms, corroborated severity, lineage, window ttl,
-- then 12 fields per detection (fp site source label modality score seq captured id severity
-- evidence alert_id); alert_id is a fresh UUIDv7, used only if this detection opens a new
-- alert. Returns (outcome, fingerprint, detail) per detection, in order. Each detection
-- is applied atomically (the whole batch is), and a batch is one round trip.
local P = ARGV[1]
local k, n, horizon, corr = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local sev_corr, lineage, win_ttl = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])

local function observe(fp, site, source, label, modality, score_s, seq_s, cap_s, det, sev_self, evidence, alert_id)
local score, seq, cap = tonumber(score_s), tonumber(seq_s), tonumber(cap_s)
-- 1. dedup + confirmation window of this source: a detection id already in it is a replay,
-- whatever score the re-run gave (a model's float output can differ with the batch it ran in)
local win = P .. ':win:' .. fp
local suffix = '|' .. det
for _, m in ipairs(redis.call('ZRANGE', win, 0, -1)) do
  if string.sub(m, -#suffix) == suffix then return {'replay', fp} end
end
local member = cap_s .. '|' .. score_s .. '|' .. det
local pos = seq
if seq < 0 then pos = cap end
redis.call('ZADD', win, pos, member)
redis.call('PEXPIRE', win, win_ttl)
if seq >= 0 then  -- keep the last n windows as seen from this one (exact when in order)
  redis.call('ZREMRANGEBYSCORE', win, '-inf', '(' .. (pos - n + 1))
else
  redis.call('ZREMRANGEBYRANK', win, 0, -(n + 1))
end

local sidx = P .. ':site:' .. site

-- 2. an active alert this source feeds: refresh it (a dedup hit)
local srck = P .. ':src:' .. fp
local target = redis.call('GET', srck)
if not target and redis.call('HGET', P .. ':alert:' .. fp, 'status') == 'firing' then
  target = fp
  redis.call('SET', srck, fp)
end
if target then
  local ak = P .. ':alert:' .. target
  local h = redis.call('HMGET', ak, 'status', 'last_seen_ms', 'max_score', 'version', 'idx_ms')
  if h[1] == 'firing' then
    local last = tonumber(h[2])
    -- a replayed straggler far older than what the alert has seen must not keep it alive
    if cap < last - horizon then return {'stale', target} end
    local upd = {'last_obs_ms', now, 'version', tonumber(h[4]) + 1}
    if cap > last then
      upd[#upd + 1] = 'last_seen_ms'
      upd[#upd + 1] = cap
      -- the site index only needs ~250 ms precision for corroboration: skip most updates
      if cap - tonumber(h[5] or '0') >= 250 then
        upd[#upd + 1] = 'idx_ms'
        upd[#upd + 1] = cap
        redis.call('ZADD', sidx, cap, target)
      end
    end
    if score > tonumber(h[3]) then
      upd[#upd + 1] = 'max_score'
      upd[#upd + 1] = score_s
      upd[#upd + 1] = 'evidence'
      upd[#upd + 1] = evidence
    end
    redis.call('HSET', ak, unpack(upd))
    local dk = P .. ':dets:' .. target
    if redis.call('LPUSH', dk, det) > 2 * lineage then redis.call('LTRIM', dk, 0, lineage - 1) end
    return {'refresh', target}
  end
  redis.call('DEL', srck)
end

-- 3. confirmed? k of the last n windows, captured within `horizon` of the newest
local entries = redis.call('ZRANGE', win, 0, -1, 'WITHSCORES')
local caps, scores, ids, poss, maxcap, maxpos = {}, {}, {}, {}, 0, 0
for j = 1, #entries, 2 do
  local i = (j + 1) / 2
  local c, s, d = string.match(entries[j], '^(%d+)|([^|]+)|(.*)$')
  caps[i], scores[i], ids[i], poss[i] = tonumber(c), tonumber(s), d, tonumber(entries[j + 1])
  if caps[i] > maxcap then maxcap = caps[i] end
  if poss[i] > maxpos then maxpos = poss[i] end
end
local count, first, best, best_s, hit, mine = 0, maxcap, score, score_s, {}, false
for i = 1, #ids do
  if caps[i] >= maxcap - horizon and (seq < 0 or poss[i] > maxpos - n) then
    count = count + 1
    hit[#hit + 1] = i
    if ids[i] == det then mine = true end
    if caps[i] < first then first = caps[i] end
    if scores[i] > best then best = scores[i]; best_s = string.match(entries[2 * i - 1], '^%d+|([^|]+)|') end
  end
end
if not mine then return {'stale', fp} end
if count < k then return {'pending', fp, tostring(count)} end
table.sort(hit, function(a, b) return caps[a] < caps[b] end)

-- 4. corroboration: an active alert of the other modality at this site, seen within `corr`
for _, c in ipairs(redis.call('ZRANGEBYSCORE', sidx, cap - corr, '+inf')) do
  local ak = P .. ':alert:' .. c
  local h = redis.call('HMGET', ak, 'status', 'label', 'modalities', 'sources', 'sfps', 'last_seen_ms', 'max_score')
  -- (an alert rebuilt from the alerts topic knows its modalities but not every source: it takes
  -- a source back while it has fewer sources than modalities, see alerting/rebuild.py)
  local has = string.find(',' .. h[3] .. ',', ',' .. modality .. ',', 1, true)
  local _, nmods = string.gsub(h[3], ',', '')
  local _, nsrcs = string.gsub(h[4], ',', '')
  if h[1] == 'firing' and h[2] == label and (not has or nsrcs < nmods) then
    local mods = {}
    for m in string.gmatch(h[3], '[^,]+') do mods[#mods + 1] = m end
    if not has then mods[#mods + 1] = modality end
    table.sort(mods)
    redis.call('HSET', ak, 'modalities', table.concat(mods, ','), 'sources', h[4] .. ',' .. source,
               'sfps', h[5] .. ',' .. fp, 'severity', sev_corr, 'last_obs_ms', now, 'corroborated_ms', now)
    if maxcap > tonumber(h[6]) then
      redis.call('HSET', ak, 'last_seen_ms', maxcap, 'idx_ms', maxcap)
      redis.call('ZADD', sidx, maxcap, c)
    end
    if best > tonumber(h[7]) then redis.call('HSET', ak, 'max_score', best_s, 'evidence', evidence) end
    redis.call('HINCRBY', ak, 'version', 1)
    local dk = P .. ':dets:' .. c
    for _, i in ipairs(hit) do redis.call('LPUSH', dk, ids[i]) end
    redis.call('LTRIM', dk, 0, lineage - 1)
    redis.call('SET', srck, c)
    redis.call('ZADD', P .. ':timers', now, c)
    return {'corroborated', c}
  end
end

-- 5. a new alert (a new incarnation of this fingerprint, named by the fresh alert_id; `inc`
-- only counts incarnations while Redis remembers the fingerprint, so no id derives from it)
local ak = P .. ':alert:' .. fp
local dk = P .. ':dets:' .. fp
local prev = redis.call('HMGET', ak, 'inc', 'version')
local inc = tonumber(prev[1] or '0') + 1
-- versions keep counting across incarnations, so a decision made on the previous one can
-- never pass the compare-and-set of this one
local version = tonumber(prev[2] or '0') + 1
redis.call('DEL', ak, dk)
redis.call('HSET', ak, 'fp', fp, 'alert_id', alert_id, 'inc', inc, 'status', 'firing', 'site', site,
           'source', source, 'label', label, 'sources', source, 'sfps', fp, 'modalities', modality,
           'severity', sev_self, 'max_score', best_s, 'starts_ms', first, 'last_seen_ms', maxcap, 'last_obs_ms', now,
           'created_ms', now, 'version', version, 'evidence', evidence, 'idx_ms', maxcap)
for _, i in ipairs(hit) do redis.call('LPUSH', dk, ids[i]) end
redis.call('LTRIM', dk, 0, lineage - 1)
redis.call('SET', srck, fp)
redis.call('ZADD', sidx, maxcap, fp)
redis.call('ZADD', P .. ':firing', now, fp)
redis.call('ZADD', P .. ':timers', now, fp)
return {'fired', fp, alert_id}
end

local out = {}
for i = 9, #ARGV, 12 do
  local r = observe(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
                    ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10], ARGV[i + 11])
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3] or ''
end
return out
"""

CLAIM = _TIME + r"""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, fp in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), fp) end
table.insert(due, 1, tostring(now))
return due
"""

COMMIT = _TIME + r"""
local P, fp, expected = ARGV[1], ARGV[2], ARGV[3]
local ak = P .. ':alert:' .. fp
local v = redis.call('HGET', ak, 'version')
if expected == '' then
  if v then return 0 end
elseif v ~= expected then
  return 0
end
local i = 8
local nf = tonumber(ARGV[7])
if nf > 0 then
  local f = {}
  for j = 0, 2 * nf - 1 do f[#f + 1] = ARGV[i + j] end
  redis.call('HSET', ak, unpack(f))
  i = i + 2 * nf
end
if v then redis.call('HINCRBY', ak, 'version', 1) end
local ni = tonumber(ARGV[i]); i = i + 1
for _ = 1, ni do
  local ch, id, payload, group = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local ok = P .. ':ob:' .. id
  if redis.call('EXISTS', ok) == 0 then
    redis.call('HSET', ok, 'channel', ch, 'payload', payload, 'attempts', 0, 'created_ms', now)
    redis.call('ZADD', P .. ':obq:' .. ch, now, id)
    redis.call('SADD', P .. ':obch', ch)
    if group ~= '' then  -- sent in the order written (alerting/outbox.py)
      redis.call('HSET', ok, 'group', group)
      redis.call('ZADD', P .. ':obg:' .. group, redis.call('INCR', P .. ':obn'), id)
    end
  end
end
if ARGV[4] == '' then
  redis.call('ZREM', P .. ':timers', fp)
else
  redis.call('ZADD', P .. ':timers', tonumber(ARGV[4]), fp)
end
if ARGV[5] == '1' and v then
  local h = redis.call('HMGET', ak, 'sfps', 'site')
  for s in string.gmatch(h[1] or '', '[^,]+') do
    local sk = P .. ':src:' .. s
    if redis.call('GET', sk) == fp then redis.call('DEL', sk) end
  end
  redis.call('ZREM', P .. ':site:' .. h[2], fp)
  redis.call('ZREM', P .. ':firing', fp)
  redis.call('PEXPIRE', ak, tonumber(ARGV[6]))
  redis.call('PEXPIRE', P .. ':dets:' .. fp, tonumber(ARGV[6]))
end
return 1
"""

WATERMARKS = _TIME + r"""
-- KEYS[1]: the watermark hash. ARGV[1]: how many partitions the topic has; then pairs
-- (partition, age_ms): what was written to that partition more than age_ms ago has been
-- observed. A mark only moves forward (a replay after a rebalance does not undo it); marks of
-- partitions the topic no longer has are dropped.
for i = 2, #ARGV, 2 do
  local mark = now - tonumber(ARGV[i + 1])
  if mark > tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') then redis.call('HSET', KEYS[1], ARGV[i], mark) end
end
local n = tonumber(ARGV[1])
for _, p in ipairs(redis.call('HKEYS', KEYS[1])) do
  if tonumber(p) >= n then redis.call('HDEL', KEYS[1], p) end
end
return 1
"""


REPORTS = _TIME + r"""
-- KEYS[1]: the report hash. ARGV[1]: the longest gap (ms) that still counts as reporting without
-- a break; then triples (site|source, age_ms, kind 's' summary or 'd' detection), oldest first.
-- A detection only extends a source that has sent a summary (a producer of detections alone is
-- judged by its detections, as before).
local gap = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local f, mark = ARGV[i], now - tonumber(ARGV[i + 1])
  local cur = redis.call('HGET', KEYS[1], f)
  if cur or ARGV[i + 2] == 's' then
    local since, last = mark, 0
    if cur then
      local s, l = string.match(cur, '^(%d+)|(%d+)$')
      since, last = tonumber(s), tonumber(l)
    end
    if mark > last then
      if mark - last > gap then since = mark end
      redis.call('HSET', KEYS[1], f, string.format('%d|%d', since, mark))
    end
  end
end
return 1
"""


@dataclass(frozen=True)
class Coverage:
    """How the processors have reported on an alert's sources: without a break since
    ``since_ms``, the latest at ``last_ms`` (both when written, in Redis's clock)."""

    since_ms: int
    last_ms: int


def fingerprint(site: str, source: str, label: str) -> str:
    """Stable id of (site, source, label): 16 hex digits."""
    return hashlib.sha256(f"{site}\x1f{source}\x1f{label}".encode()).hexdigest()[:16]


_fingerprint = functools.lru_cache(maxsize=65536)(fingerprint)


@dataclass(frozen=True)
class Observation:
    """What ``observe`` did with one detection."""

    outcome: str  # fired | corroborated | refresh | pending | replay | stale
    fingerprint: str
    detail: str | None = None  # fired: the new alert_id; pending: how many windows count


@dataclass
class AlertSnapshot:
    """One alert as read from Redis; ``raw`` keeps every field (route state included)."""

    raw: dict[str, str]
    detection_ids: list[str] = field(default_factory=list)  # oldest first

    @property
    def fp(self) -> str:
        return self.raw["fp"]

    @property
    def alert_id(self) -> str:
        """This incarnation's id (a UUIDv7 set when it fired, never reused). An alert written
        before ids existed gets one derived from its creation, stable for its lifetime."""
        legacy = f"{self.fp}/{self.raw.get('created_ms')}"
        return self.raw.get("alert_id") or str(uuid.uuid5(uuid.NAMESPACE_OID, legacy))

    @property
    def inc(self) -> int:
        return int(self.raw.get("inc", 1))

    @property
    def version(self) -> str:
        return self.raw["version"]

    @property
    def status(self) -> str:
        return self.raw.get("status", "firing")

    @property
    def site(self) -> str:
        return self.raw["site"]

    @property
    def source(self) -> str:
        return self.raw["source"]

    @property
    def label(self) -> str:
        return self.raw.get("label", "drone")

    @property
    def sources(self) -> list[str]:
        return self.raw.get("sources", self.source).split(",")

    @property
    def modalities(self) -> list[str]:
        return sorted(self.raw.get("modalities", "").split(","), reverse=True)  # vision first

    @property
    def severity(self) -> str:
        return self.raw.get("severity", "warning")

    @property
    def max_score(self) -> float:
        return float(self.raw.get("max_score", 0.0))

    def ms(self, name: str) -> int | None:
        value = self.raw.get(name)
        return int(float(value)) if value not in (None, "") else None

    @property
    def evidence(self) -> dict | None:
        try:
            return json.loads(self.raw["evidence"]) if self.raw.get("evidence") else None
        except json.JSONDecodeError:
            return None

    def labels(self) -> dict[str, tuple[str, ...]]:
        """The labels routes, silences and inhibition rules match on (multi-valued)."""
        return {"site": (self.site,), "source": tuple(self.sources), "label": (self.label,),
                "severity": (self.severity,), "modality": tuple(self.modalities),
                "fingerprint": (self.fp,)}


class AlertState:
    """The Redis side of confirmation, dedup and lifecycle."""

    def __init__(self, redis: aioredis.Redis, settings: AlertingSettings):
        self.redis = redis
        self.settings = settings
        self.prefix = settings.key_prefix
        self._observe = redis.register_script(OBSERVE)
        self._claim = redis.register_script(CLAIM)
        self._commit = redis.register_script(COMMIT)
        self._watermarks = redis.register_script(WATERMARKS)
        self._reports = redis.register_script(REPORTS)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # ---------------------------------------------------------------- observe

    def _head(self) -> list:
        s, c = self.settings, self.settings.confirm
        return [self.prefix, c.k, c.n, int(c.horizon * 1000), int(s.corroboration * 1000), s.severity.corroborated,
                s.lineage_max, int(max(c.horizon * 3, 60.0) * 1000)]

    def _fields(self, d: Detection) -> list:
        sev = self.settings.severity
        best = max(d.boxes, key=lambda b: b.score, default=None)
        evidence = {"detection_id": d.id, "input_event_id": d.input_event_id, "source": d.source,
                    "modality": d.modality, "score": d.score, "model": f"{d.model.name} {d.model.version}",
                    "box": [best.x1, best.y1, best.x2, best.y2] if best else None,
                    "boxes": [b.model_dump() for b in sorted(d.boxes, key=lambda b: -b.score)[:10]] or None,
                    "captured_at": d.captured_at.isoformat()}
        return [_fingerprint(d.site, d.source, d.label), d.site, d.source, d.label, d.modality, repr(float(d.score)),
                d.input_seq if d.input_seq is not None else -1, int(d.captured_at.timestamp() * 1000), d.id,
                sev.vision if d.modality == "vision" else sev.audio, json.dumps(evidence, separators=(",", ":")),
                uuid7()]

    async def observe(self, d: Detection) -> Observation:
        return (await self.observe_many([d]))[0]

    async def observe_many(self, detections: Sequence[Detection], chunk: int = 100) -> list[Observation]:
        """Apply detections in order, ``chunk`` per script call (each call atomic; a chunk holds
        Redis for well under a millisecond per 10 detections), all chunks in one round trip."""
        if not detections:
            return []
        head = self._head()
        calls = [head + [f for d in detections[i:i + chunk] for f in self._fields(d)]
                 for i in range(0, len(detections), chunk)]
        if len(calls) == 1:
            replies = [await self._observe(args=calls[0])]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for args in calls:
                    await self._observe(args=args, client=pipe)
                replies = await pipe.execute()
        flat = [x for reply in replies for x in reply]
        return [Observation(flat[i], flat[i + 1], flat[i + 2] or None) for i in range(0, len(flat), 3)]

    # ---------------------------------------------------------------- timers

    async def claim_due(self, limit: int = 64) -> tuple[int, list[str]]:
        """(Redis now in ms, fingerprints whose timer is due), each leased to this caller."""
        out = await self._claim(keys=[self.key("timers")],
                                args=[int(self.settings.tick_lease * 1000), limit])
        return int(out[0]), list(out[1:])

    async def now_ms(self) -> int:
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def schedule(self, fp: str, due_ms: int) -> None:
        await self.redis.zadd(self.key("timers"), {fp: due_ms})

    async def load(self, fp: str) -> AlertSnapshot | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.key("alert", fp))
            pipe.lrange(self.key("dets", fp), 0, self.settings.lineage_max - 1)
            raw, dets = await pipe.execute()
        if not raw:
            return None
        return AlertSnapshot(raw, list(reversed(dets)))

    async def commit(self, fp: str, expected_version: str | None, *, updates: dict[str, object],
                     outbox: Sequence[tuple[str, str, str]], next_tick_ms: int | None,
                     resolve: bool = False) -> bool:
        """Apply a decision if the alert is still at ``expected_version`` (None: the alert must
        not exist). ``outbox`` holds (channel, id, payload[, order group]) entries, written once
        per id; the entries of one order group are delivered in the order written."""
        args: list = [self.prefix, fp, expected_version or "", "" if next_tick_ms is None else next_tick_ms,
                      "1" if resolve else "0", int(self.settings.alert_retention * 1000), len(updates)]
        for k, v in updates.items():
            args += [k, v]
        args.append(len(outbox))
        for channel, id_, payload, *group in outbox:
            args += [channel, id_, payload, group[0] if group else ""]
        return bool(await self._commit(args=args))

    # ---------------------------------------------------------------- watermark

    async def advance_watermarks(self, partitions: int, ages_ms: dict[int, float]) -> None:
        """Partition ``p`` of ``detections`` (which has ``partitions``) has been observed up to
        ``ages_ms[p]`` ago. Ages rather than times, so the marks are in Redis's clock, as is
        the time an alert last saw a detection."""
        args: list = [partitions]
        for p, age in ages_ms.items():
            args += [p, max(0, int(age))]
        await self._watermarks(keys=[self.key("wm")], args=args)

    async def watermark_ms(self) -> int | None:
        """Every detection written before this time (ms) has been observed; None until a
        consumer has reported."""
        marks = await self.redis.hvals(self.key("wm"))
        return min(int(m) for m in marks) if marks else None

    # ---------------------------------------------------------------- reports

    async def note_reports(self, reports: Sequence[tuple[str, str, float, bool]]) -> None:
        """(site, source, age_ms, is_summary) of each summary or detection read, oldest first:
        its processor reported on that source ``age_ms`` ago."""
        if not reports:
            return
        args: list = [int(self.settings.stale_after * 1000)]
        for site, source, age, summary in reports:
            args += [f"{site}|{source}", max(0, int(age)), "s" if summary else "d"]
        await self._reports(keys=[self.key("rep")], args=args)

    async def coverage(self, snap: AlertSnapshot) -> Coverage | None:
        """Over the alert's sources that send summaries: reporting without a break since the
        latest of their starts, up to the earliest of their last reports. None: no source of
        it sends summaries."""
        marks = await self.redis.hmget(self.key("rep"), [f"{snap.site}|{s}" for s in snap.sources])
        pairs = [tuple(int(x) for x in m.split("|")) for m in marks if m]
        if not pairs:
            return None
        return Coverage(max(p[0] for p in pairs), min(p[1] for p in pairs))

    # ---------------------------------------------------------------- reads

    async def site_alerts(self, site: str) -> list[AlertSnapshot]:
        """The active alerts of one site (for inhibition)."""
        fps = await self.redis.zrange(self.key("site", site), 0, -1)
        return await self._many(fps)

    async def firing(self) -> list[AlertSnapshot]:
        fps = await self.redis.zrange(self.key("firing"), 0, -1)
        return await self._many(fps)

    async def firing_count(self) -> int:
        return int(await self.redis.zcard(self.key("firing")))

    async def _many(self, fps: list[str]) -> list[AlertSnapshot]:
        if not fps:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for fp in fps:
                pipe.hgetall(self.key("alert", fp))
            raws = await pipe.execute()
        return [AlertSnapshot(r) for r in raws if r]
