// SkySentry console: fills the page shells from /api/... and /events (server-sent events).
// Plain JavaScript, no build step. Element names follow docs/console.md ("Page contract").
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, String(v));
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function toLogin() {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = csrf();
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    const r = await fetch(path, opts);
    if (r.status === 401) { toLogin(); throw new Error("login required"); }
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(doc.error || r.statusText);
    return doc;
  }

  function setConn(state, text) {
    const c = $("#conn");
    if (c) { c.dataset.state = state; c.textContent = text; }
  }

  // One event stream; reopened after a failure (an EventSource refused with 401 stays closed).
  function stream(kinds, handlers, onOpen) {
    let es;
    const open = () => {
      es = new EventSource("/events?kinds=" + kinds.join(","));
      es.onopen = () => { setConn("live", "live"); if (onOpen) onOpen(); };
      es.onerror = () => {
        setConn("down", "reconnecting");
        if (es.readyState === EventSource.CLOSED) {
          fetch("/api/health", { credentials: "same-origin" }).then(r => {
            if (r.status === 401) toLogin(); else setTimeout(open, 2000);
          }).catch(() => setTimeout(open, 2000));
        }
      };
      for (const [name, fn] of Object.entries(handlers)) {
        es.addEventListener(name, e => { try { fn(JSON.parse(e.data)); } catch (err) { console.error(err); } });
      }
    };
    open();
  }

  const ago = iso => {
    if (!iso) return "";
    const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (s < 0) return "in " + human(-s);
    return human(s) + " ago";
  };
  const human = s => s < 90 ? s + "s" : s < 5400 ? Math.round(s / 60) + "m" : s < 172800 ? Math.round(s / 3600) + "h"
    : Math.round(s / 86400) + "d";
  const clock = iso => iso ? new Date(iso).toLocaleTimeString() : "";

  // ------------------------------------------------------------------ live wall

  function wallPage() {
    const wall = $("#wall");
    const cams = new Map();
    const mics = new Map();
    let windowS = 60;

    const dropEmpty = () => { const e = $(".empty", wall); if (e) e.remove(); };

    function camera(source) {
      let c = cams.get(source);
      if (c) return c;
      dropEmpty();
      const img = el("img", { class: "frame", alt: source });
      const canvas = el("canvas", { class: "boxes" });
      const caption = el("figcaption");
      const fig = el("figure", { class: "camera", "data-source": source, "data-seq": "" },
        el("div", { class: "view" }, img, canvas), caption);
      wall.append(fig);
      c = { fig, img, canvas, caption, pending: null, loading: false, shown: null };
      cams.set(source, c);
      return c;
    }

    function drawBoxes(c, ev) {
      const w = ev.width || c.img.naturalWidth || 640, h = ev.height || c.img.naturalHeight || 480;
      c.canvas.width = w; c.canvas.height = h;
      const g = c.canvas.getContext("2d");
      g.clearRect(0, 0, w, h);
      const lw = Math.max(2, Math.round(w / 320));
      g.lineWidth = lw;
      g.font = `${Math.max(12, Math.round(w / 28))}px sans-serif`;
      for (const b of ev.boxes || []) {
        const color = b.label === "drone" ? "#f85149" : "#d29922";
        g.strokeStyle = color; g.fillStyle = color;
        const x = b.x1 * w, y = b.y1 * h;
        g.strokeRect(x, y, (b.x2 - b.x1) * w, (b.y2 - b.y1) * h);
        g.fillText(`${b.label} ${b.score.toFixed(2)}`, x + lw, Math.max(14, y - lw));
      }
    }

    function caption(c, ev) {
      const det = ev.detection ? ` · ${ev.detection.label} ${ev.detection.score.toFixed(2)}` : "";
      const age = ev.time ? (Date.now() - Date.parse(ev.time)) / 1000 : null;
      const old = age !== null && age > 5;  // a camera that stopped: say so, do not pass it off as live
      c.fig.dataset.stale = String(old);
      c.caption.replaceChildren(el("b", { text: ev.source }),
        el("span", { text: ev.url ? `${ev.site} · seq ${ev.seq}${det}${old ? " · " + ago(ev.time) : ""}`
                                  : `${ev.site} · no frame yet${det}` }));
    }

    // latest wins: while one frame loads, newer events replace the pending one
    function pump(c) {
      if (c.loading || !c.pending) return;
      const ev = c.pending;
      c.pending = null;
      if (!ev.url) { caption(c, ev); return; }
      c.loading = true;
      const pre = new Image();
      pre.onload = () => {
        c.img.src = ev.url;  // cached by now
        c.fig.dataset.seq = String(ev.seq);
        c.shown = ev;
        drawBoxes(c, ev);
        caption(c, ev);
        c.loading = false;
        pump(c);
      };
      pre.onerror = () => { c.loading = false; pump(c); };  // evicted meanwhile: the next event brings a newer one
      pre.src = ev.url;
    }

    function onFrame(ev) {
      const c = camera(ev.source);
      c.pending = ev;
      pump(c);
    }

    function microphone(source, site) {
      let m = mics.get(source);
      if (m) return m;
      dropEmpty();
      const canvas = el("canvas", { class: "scores", width: 600, height: 120 });
      const cap = el("figcaption");
      const fig = el("figure", { class: "microphone", "data-source": source, "data-score": "" }, canvas, cap);
      wall.append(fig);
      m = { fig, canvas, cap, site, points: [] };
      mics.set(source, m);
      return m;
    }

    function drawScores(m) {
      const g = m.canvas.getContext("2d"), w = m.canvas.width, h = m.canvas.height;
      const now = Date.now() / 1000;
      m.points = m.points.filter(p => p[0] >= now - windowS);
      g.clearRect(0, 0, w, h);
      g.strokeStyle = "#2a3440"; g.beginPath(); g.moveTo(0, h * 0.4); g.lineTo(w, h * 0.4); g.stroke();
      g.strokeStyle = "#58a6ff"; g.lineWidth = 2; g.beginPath();
      m.points.forEach((p, i) => {
        const x = (1 - (now - p[0]) / windowS) * w, y = (1 - p[1]) * (h - 4) + 2;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
      const last = m.points.length ? m.points[m.points.length - 1][1] : null;
      m.cap.replaceChildren(el("b", { text: m.fig.dataset.source }),
        el("span", { text: `${m.site} · score ${last === null ? "–" : last.toFixed(2)} · last ${windowS}s` }));
    }

    function onScore(ev) {
      const m = microphone(ev.source, ev.site);
      m.points.push([ev.t, ev.score]);
      m.fig.dataset.score = String(ev.score);
      drawScores(m);
    }

    async function load() {
      const view = await api("GET", "/api/wall");
      windowS = view.score_window_s || 60;
      for (const cam of view.cameras) onFrame(cam);
      for (const mic of view.microphones) {
        const m = microphone(mic.source, mic.site);
        m.points = mic.scores.slice();
        if (mic.score !== null) m.fig.dataset.score = String(mic.score);
        drawScores(m);
      }
    }

    stream(["frame", "score"], { frame: onFrame, score: onScore }, () => load().catch(console.error));
    setInterval(() => {
      mics.forEach(drawScores);
      cams.forEach(c => { if (c.shown) caption(c, c.shown); });
    }, 1000);
  }

  // ------------------------------------------------------------------ alerts

  function alertsPage() {
    const section = $("#alerts");
    const cards = new Map();  // alert_id → {art, card}

    const rank = c => (c.status === "resolved" ? 1 : 0);
    function order() {
      const all = [...cards.values()].sort((a, b) => rank(a.card) - rank(b.card) || (rank(a.card)
        ? (b.card.ends_at || b.card.last_seen_at || "").localeCompare(a.card.ends_at || a.card.last_seen_at || "")
        : (b.card.starts_at || "").localeCompare(a.card.starts_at || "")));
      all.forEach(({ art }) => section.append(art));
    }

    function build(card) {
      const ack = el("button", { class: "ack", type: "button", text: "Acknowledge" });
      ack.addEventListener("click", async () => {
        ack.disabled = true;
        try { const doc = await api("POST", `/api/alerts/${encodeURIComponent(card.alert_id)}/ack`, {});
              if (doc.alert) upsert(doc.alert); } catch (e) { note(art, e.message); ack.disabled = false; }
      });
      const scope = el("select", { name: "scope" },
        ...["source", "site", "label"].map(s => el("option", { value: s, text: s, selected: s === "source" })));
      const duration = el("select", { name: "duration" },
        ...["15m", "1h", "4h", "1d"].map(d => el("option", { value: d, text: d, selected: d === "1h" })));
      const form = el("form", { class: "silence" }, scope, duration,
        el("button", { type: "submit", class: "silence", text: "Silence" }));
      form.addEventListener("submit", async e => {
        e.preventDefault();
        try {
          const s = await api("POST", `/api/alerts/${encodeURIComponent(card.alert_id)}/silence`,
            { scope: scope.value, duration: duration.value });
          note(art, `silenced ${s.matchers.join(", ")} for ${duration.value} (${s.id})`);
        } catch (err) { note(art, err.message); }
      });
      const art = el("article", { class: "alert-card" },
        el("header", {}, el("span", { class: "severity" }), el("span", { class: "status badge" }),
          el("span", { class: "ack-state badge" }), el("span", { class: "silenced badge" })),
        el("h3", { class: "title" }),
        el("dl", {},
          el("dt", { text: "Sources" }), el("dd", { class: "sources" }),
          el("dt", { text: "Site" }), el("dd", { class: "site" }),
          el("dt", { text: "Score" }), el("dd", { class: "score" }),
          el("dt", { text: "Started" }), el("dd", { class: "started" }),
          el("dt", { text: "Last seen" }), el("dd", { class: "last-seen" })),
        el("div", { class: "lineage" }),
        el("ol", { class: "timeline" }),
        el("div", { class: "actions" }, ack, form, el("span", { class: "note badge" })));
      return art;
    }

    function note(art, text) { $(".note", art).textContent = text; }

    function fill(art, c) {
      art.dataset.alertId = c.alert_id;
      art.dataset.fingerprint = c.fingerprint;
      art.dataset.status = c.status;
      art.dataset.acknowledged = String(!!c.acknowledged);
      const sev = $(".severity", art);
      sev.textContent = c.severity; sev.dataset.severity = c.severity;
      $(".status", art).textContent = c.status;
      $(".ack-state", art).textContent = c.ack ? `acknowledged by ${c.ack.by}` : "";
      $(".silenced", art).textContent = c.silenced_by ? `silenced (${c.silenced_by})` : "";
      $(".title", art).textContent = c.summary || `${c.label} at ${c.site} (${c.source})`;
      $(".sources", art).textContent = c.sources.join(", ");
      $(".site", art).textContent = c.site;
      $(".score", art).textContent = `${Math.round(c.max_score * 100)}% · ${c.modalities.join(" + ")}`;
      $(".started", art).textContent = `${clock(c.starts_at)} (${ago(c.starts_at)})`;
      $(".last-seen", art).textContent = `${clock(c.last_seen_at)}${c.ends_at ? " · ended " + clock(c.ends_at) : ""}`;
      let img = $("img.snapshot", art);
      if (c.snapshot) {
        if (!img) { img = el("img", { class: "snapshot", alt: "evidence" }); $(".title", art).after(img); }
        if (img.getAttribute("src") !== c.snapshot) img.src = c.snapshot;
      } else if (img) img.remove();
      const lineage = $(".lineage", art);
      lineage.replaceChildren(el("div", { text: `alert ${c.alert_id} → ${c.lineage.length} detection(s) → input events` }),
        el("ol", {}, ...c.lineage.map(d => el("li", { "data-detection-id": d.detection_id },
          el("code", { text: d.detection_id.slice(0, 8) }), " → ",
          el("code", { class: "input", "data-input-event-id": d.input_event_id || "",
                       text: d.input_event_id ? d.input_event_id.slice(0, 8) : "(input not read)" }),
          d.source ? ` ${d.source}${d.seq !== undefined && d.seq !== null ? " #" + d.seq : ""}` : ""))));
      $(".timeline", art).replaceChildren(...c.timeline.map(t =>
        el("li", { "data-event": t.event }, el("time", { datetime: t.at, text: clock(t.at) }), ` ${t.event}`,
          t.detail ? el("span", { class: "badge", text: t.detail }) : null)));
      $("button.ack", art).disabled = c.acknowledged || c.status === "resolved";
      $("button.silence", art).disabled = c.status === "resolved";
    }

    function upsert(card) {
      let entry = cards.get(card.alert_id);
      if (!entry) { entry = { art: build(card), card }; cards.set(card.alert_id, entry); }
      entry.card = card;
      fill(entry.art, card);
      order();
      const st = $("#alerts-status");
      if (st) st.textContent = `${[...cards.values()].filter(e => e.card.status !== "resolved").length} active`;
    }

    async function load() {
      const doc = await api("GET", "/api/alerts");
      const keep = new Set(doc.alerts.map(c => c.alert_id));
      for (const [id, entry] of cards) if (!keep.has(id)) { entry.art.remove(); cards.delete(id); }
      doc.alerts.forEach(upsert);
      if (doc.redis_error) $("#alerts-status").textContent = "Redis: " + doc.redis_error;
    }

    stream(["alert"], { alert: upsert }, () => load().catch(console.error));
  }

  // ------------------------------------------------------------------ silences

  function silencesPage() {
    const tbody = $("#silences tbody");
    const form = $("#new-silence");
    const error = $("#form-error");

    async function load() {
      const doc = await api("GET", "/api/silences");
      setConn("live", "live");
      tbody.replaceChildren(...doc.silences.map(s => {
        const expire = el("button", { class: "expire", type: "button", text: "Expire" });
        expire.addEventListener("click", async () => {
          expire.disabled = true;
          try { await api("DELETE", `/api/silences/${encodeURIComponent(s.id)}`); } catch (e) { showError(e.message); }
          load().catch(console.error);
        });
        return el("tr", { class: "silence", "data-silence-id": s.id },
          el("td", {}, el("code", { text: s.matchers.join(", ") })),
          el("td", { text: `${clock(s.ends_at)} (in ${human(s.ends_in_s)})` }),
          el("td", { text: s.created_by }), el("td", { text: s.comment }), el("td", {}, expire));
      }));
    }

    function showError(text) { error.textContent = text; error.hidden = !text; }

    form.addEventListener("submit", async e => {
      e.preventDefault();
      const data = new FormData(form);
      try {
        await api("POST", "/api/silences", { matchers: data.get("matchers"), duration: data.get("duration"),
          comment: data.get("comment") || "" });
        showError("");
        form.elements.matchers.value = "";
        form.elements.comment.value = "";
      } catch (err) { showError(err.message); }
      load().catch(console.error);
    });
    load().catch(e => { setConn("down", "not reachable"); console.error(e); });
    setInterval(() => load().catch(() => setConn("down", "not reachable")), 5000);
  }

  // ------------------------------------------------------------------ health

  function healthPage() {
    function render(h) {
      $("#services-hint").hidden = h.services.length > 0;
      $("#services tbody").replaceChildren(...h.services.map(s => el("tr",
        { class: "service", "data-service": s.name, "data-up": String(s.up), "data-ready": String(s.ready) },
        el("td", { text: s.name }), el("td", { text: s.up ? "up" : "down" }), el("td", { text: s.ready ? "ready" : "not ready" }),
        el("td", { text: s.detail.join("; ") }))));
      $("#processors tbody").replaceChildren(...h.processors.map(p => el("tr",
        { class: "processor", "data-service": p.service, "data-modality": p.modality, "data-model": p.name,
          "data-version": p.version },
        el("td", { text: p.service }), el("td", { text: p.modality }), el("td", { class: "model", text: p.name }),
        el("td", { class: "version", text: p.version }),
        el("td", { class: "rate", text: p.windows_per_s === null ? "–" : p.windows_per_s.toFixed(1) }))));
      $("#lag tbody").replaceChildren(...h.lag.map(g => el("tr",
        { class: "group", "data-group": g.group, "data-lag": String(g.lag) },
        el("td", { text: g.group }), el("td", { text: String(g.lag) }),
        el("td", { text: Object.entries(g.topics).map(([t, n]) => `${t}: ${n}`).join(", ") }))));
      const err = $("#kafka-error");
      err.textContent = h.kafka_error ? "Kafka: " + h.kafka_error : "";
      err.hidden = !h.kafka_error;
    }
    stream(["health"], { health: render }, () => api("GET", "/api/health").then(render).catch(console.error));
  }

  const pages = { wall: wallPage, alerts: alertsPage, silences: silencesPage, health: healthPage };
  const start = pages[document.body.dataset.page];
  if (start) start();
})();
