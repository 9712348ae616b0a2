"""The console's HTML: one small shell per page; console/static/console.js fills it from the JSON
API and the event stream. The element names are a contract with the browser tests
(docs/console.md, "Page contract"): change them only together."""

from __future__ import annotations

from html import escape

NAV = (("/", "Wall", "wall"), ("/alerts", "Alerts", "alerts"), ("/silences", "Silences", "silences"),
       ("/health", "Health", "health"))
DURATIONS = ("15m", "1h", "4h", "1d")


def _shell(page: str, title: str, body: str, *, csrf: str, user: str | None, open_mode: bool) -> str:
    links = "".join(f'<a href="{href}"{" aria-current=page" if key == page else ""}>{label}</a>'
                    for href, label, key in NAV)
    who = ""
    if user and not open_mode:
        who = (f'<span class="user">{escape(user)}</span>'
               f'<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" '
               f'value="{escape(csrf)}"><button type="submit">Log out</button></form>')
    elif open_mode:
        who = '<span class="user" title="bound to loopback without credentials">local operator</span>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{escape(csrf)}">
<title>{escape(title)} · SkySentry</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head>
<body data-page="{page}">
<header class="top"><strong class="brand">SkySentry</strong><nav>{links}</nav>
<span class="conn" id="conn" data-state="connecting">connecting</span>{who}</header>
<main>
{body}
</main>
</body>
</html>
"""


def wall(**kw) -> str:
    body = """<h1>Live wall</h1>
<section id="wall" aria-live="off"><p class="empty">No camera or microphone seen yet: frames come from
<code>sensor.frames</code>, scores from <code>detections</code>.</p></section>"""
    return _shell("wall", "Live wall", body, **kw)


def alerts(**kw) -> str:
    body = """<h1>Alerts</h1>
<p class="hint">Firing first, then recent. <span id="alerts-status"></span></p>
<section id="alerts"></section>"""
    return _shell("alerts", "Alerts", body, **kw)


def silences(**kw) -> str:
    body = """<h1>Silences</h1>
<form id="new-silence" autocomplete="off">
<label>Matchers <input name="matchers" placeholder="source=cam-1, site=north" required></label>
<label>Duration <input name="duration" value="1h" placeholder="30m" required size="6"></label>
<label>Comment <input name="comment" placeholder="why"></label>
<button type="submit">Silence</button>
<p class="error" id="form-error" hidden></p>
</form>
<table id="silences">
<thead><tr><th>Matchers</th><th>Ends</th><th>By</th><th>Comment</th><th></th></tr></thead>
<tbody></tbody>
</table>"""
    return _shell("silences", "Silences", body, **kw)


def health(**kw) -> str:
    body = """<h1>Health</h1>
<h2>Services</h2>
<p class="hint" id="services-hint" hidden>No services configured: list their metrics ports under
<code>console.services</code> (name: URL), e.g. <code>vision: http://127.0.0.1:9101</code>.</p>
<table id="services"><thead><tr><th>Service</th><th>Up</th><th>Ready</th><th>Detail</th></tr></thead><tbody></tbody></table>
<h2>Processors</h2>
<table id="processors"><thead><tr><th>Service</th><th>Modality</th><th>Model</th><th>Version</th><th>Windows/s</th></tr></thead>
<tbody></tbody></table>
<h2>Consumer lag</h2>
<p class="error" id="kafka-error" hidden></p>
<table id="lag"><thead><tr><th>Group</th><th>Lag</th><th>Topics</th></tr></thead><tbody></tbody></table>"""
    return _shell("health", "Health", body, **kw)


def login(*, token: bool, users: bool, next_path: str, error: str | None) -> str:
    fields = []
    if users:
        fields.append('<label>User <input name="username" autocomplete="username"></label>'
                      '<label>Password <input name="password" type="password" autocomplete="current-password"></label>')
    if token:
        fields.append(f'<label>{"or token" if users else "Token"} '
                      '<input name="token" type="password" autocomplete="off"></label>')
    err = f'<p class="error">{escape(error)}</p>' if error else ""
    body = f"""<h1>Log in</h1>{err}
<form id="login" method="post" action="/login">
<input type="hidden" name="next" value="{escape(next_path)}">
{''.join(fields)}
<button type="submit">Log in</button>
</form>"""
    return _shell("login", "Log in", body, csrf="", user=None, open_mode=False)
