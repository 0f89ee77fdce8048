// The Activity page's live layer: seen on view, in-place triage, keyboard shortcuts and
// the live stream (docs: ARCHITECTURE.md "The Activity page"). Everything here improves
// forms that already work without JavaScript; row markup always comes from the server
// (GET /activity/rows renders templates/_event_row.html), so it has one source.
(() => {
  "use strict";

  const main = document.getElementById("feed");
  const list = document.getElementById("events");
  if (!main || !list) return;

  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const isArchive = main.dataset.archived === "1";
  const isLive = main.dataset.live === "1";
  const query = main.dataset.query || "";
  const wsSlug = main.dataset.workspace;
  const wsName = main.dataset.workspaceName;
  const announcer = document.querySelector("[data-announce]");
  const pill = document.querySelector("[data-new-pill]");
  const dialog = document.querySelector("[data-help-dialog]");
  const helpButton = document.querySelector("[data-help]");
  const search = document.getElementById("search");

  const rows = () => Array.from(list.querySelectorAll(":scope > .event"));
  const rowById = (id) => document.getElementById("e-" + id);
  const describe = (row) => (row.querySelector(".desc") || row).textContent.replace("Unseen: ", "").trim();

  // --- Small helpers -------------------------------------------------------------------

  function announce(text) {
    // Clear first so that the same sentence twice is still read out.
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = text; }, 50);
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const message = data && data.error && data.error.message;
      throw new Error(message || `The server answered ${response.status}; reload the page and try again.`);
    }
    return data;
  }

  // Rows for this page's filters, rendered by the server; only the given ids when some are.
  async function fetchRows(ids, extraQuery) {
    const params = new URLSearchParams(extraQuery === undefined ? query : extraQuery);
    if (ids && ids.length) params.set("ids", ids.join(","));
    const response = await fetch("/activity/rows?" + params.toString(), { credentials: "same-origin" });
    if (!response.ok) throw new Error(`Could not load events (${response.status}).`);
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    return {
      rows: Array.from(template.content.querySelectorAll(".event")),
      total: Number(response.headers.get("X-Activity-Total")),
      unseen: Number(response.headers.get("X-Unseen-Count")),
    };
  }

  // --- Times: the reader's timezone on hover, relative times kept fresh -----------------

  const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const exact = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
  const UNITS = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];

  function relative(date) {
    const seconds = Math.floor((Date.now() - date.getTime()) / 1000);
    if (seconds < 0) return seconds > -300 ? "just now" : "in the future";
    for (const [unit, size] of UNITS) {
      if (seconds >= size) {
        const n = Math.floor(seconds / size);
        return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
      }
    }
    return "just now";
  }

  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const date = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) return;
      el.title = `${exact.format(date)} (${timeZone})`;
      el.textContent = relative(date);
    });
  }

  // --- Badges: title, sidebar badge, workspace switcher ---------------------------------

  function setCount(el, n) {
    el.firstChild.nodeValue = String(n);
    el.classList.toggle("zero", n === 0);
  }

  const initialBadge = document.querySelector("[data-unseen-badge]");
  let unseen = parseInt(initialBadge ? initialBadge.textContent : "0", 10) || 0;

  function setUnseen(n, workspaces) {
    if (typeof n !== "number" || Number.isNaN(n)) return;
    unseen = Math.max(0, n);
    const badge = document.querySelector("[data-unseen-badge]");
    if (badge) setCount(badge, unseen);
    document.title = (unseen ? `(${unseen}) ` : "") + "Activity · " + wsName;
    const counts = Object.assign({}, workspaces || {});
    counts[wsSlug] = unseen;
    for (const [slug, count] of Object.entries(counts)) {
      const el = document.querySelector(`[data-ws-count="${CSS.escape(slug)}"]`);
      if (el && typeof count === "number") setCount(el, count);
    }
  }

  function setTotal(n) {
    main.dataset.total = String(n);
    const el = document.querySelector("[data-total-text]");
    if (el) el.firstChild.nodeValue = `${n} event${n === 1 ? "" : "s"}`;
  }

  function addTotal(delta) { setTotal(Math.max(0, Number(main.dataset.total || 0) + delta)); }

  // --- Row state -------------------------------------------------------------------------

  function unhighlight(row) {
    row.classList.remove("unseen");
    row.dataset.seen = "1";
    row.querySelectorAll(".dot, .unseen-label").forEach((el) => el.remove());
  }

  function showEmptyIfNeeded() {
    if (rows().length || document.querySelector("[data-empty]")) return;
    const box = document.createElement("div");
    box.className = "empty";
    box.dataset.empty = "";
    const line = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = isArchive ? "Nothing left in the Archive on this page." : "You’re all caught up on this page.";
    line.append(strong);
    const other = document.createElement("p");
    const link = document.createElement("a");
    const params = new URLSearchParams(query);
    if (isArchive) params.delete("archived"); else params.set("archived", "true");
    params.delete("page");
    link.href = "/activity?" + params.toString();
    link.textContent = isArchive ? "Look in the Inbox" : "Look in the Archive";
    other.append(link);
    box.append(line, other);
    list.before(box);
  }

  function hideEmpty() {
    const empty = document.querySelector("[data-empty]");
    if (empty) empty.remove();
  }

  function removeRow(row) {
    if (!row || !row.isConnected) return;
    const hadFocus = row.contains(document.activeElement) || current === row;
    const all = rows();
    const index = all.indexOf(row);
    const next = all[index + 1] || all[index - 1] || null;
    row.remove();
    addTotal(-1);
    if (hadFocus) {
      if (next) focusRow(next); else current = null;
    }
    showEmptyIfNeeded();
  }

  function created(row) { return Date.parse(row.dataset.created) || 0; }

  // Newest first, as the server orders them.
  function insertSorted(row) {
    const at = created(row);
    const after = rows().find((r) => created(r) < at);
    if (after) after.before(row); else list.append(row);
  }

  function adopt(row, isNew) {
    localise(row);
    if (isNew) row.classList.add("arrived");
    if (row.dataset.seen === "0") seenObserver.observe(row);
  }

  // --- Seen on view -----------------------------------------------------------------------
  // A row counts as seen once most of it has been on screen while the tab was visible.
  // Ids go to the server in one batch; the highlight stays in this tab until the next
  // render, so the reader can still tell what was new. Other tabs unhighlight at once.

  const seenHere = new Set();
  const pendingSeen = new Set();
  let seenTimer = 0;

  const seenObserver = new IntersectionObserver((entries) => {
    if (document.visibilityState !== "visible") return;
    for (const entry of entries) {
      const row = entry.target;
      if (!entry.isIntersecting || row.dataset.seen !== "0" || seenHere.has(row.dataset.id)) continue;
      pendingSeen.add(row.dataset.id);
      seenObserver.unobserve(row);
    }
    if (pendingSeen.size && !seenTimer) seenTimer = window.setTimeout(flushSeen, 400);
  }, { threshold: 0.6 });

  async function flushSeen() {
    seenTimer = 0;
    const ids = Array.from(pendingSeen);
    pendingSeen.clear();
    if (!ids.length) return;
    ids.forEach((id) => seenHere.add(id));
    try {
      const data = await post("/api/activity/mark-seen", { eventIds: ids });
      ids.forEach((id) => { const row = rowById(id); if (row) row.dataset.seen = "1"; });
      setUnseen(data.unseenCount);
    } catch (_) {
      // Leave them unseen: they will be tried again when they next scroll into view.
      ids.forEach((id) => {
        seenHere.delete(id);
        const row = rowById(id);
        if (row) seenObserver.observe(row);
      });
    }
  }

  function observeUnseen() {
    rows().forEach((row) => {
      if (row.dataset.seen === "0" && !seenHere.has(row.dataset.id)) {
        seenObserver.unobserve(row);
        seenObserver.observe(row);
      }
    });
  }

  // A tab opened in the background has shown nothing yet; check again once it is looked at.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") observeUnseen();
  });

  // --- Triage: archive, restore, undo in place -----------------------------------------

  function rowStatus(row, text, ok) {
    const el = row.querySelector(".row-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("ok", Boolean(ok));
  }

  async function triage(row) {
    const archive = row.dataset.archived !== "1";
    const button = row.querySelector(".archive-form button");
    if (button) button.disabled = true;
    try {
      await post("/api/activity/archive", { eventIds: [row.dataset.id], archive });
    } catch (error) {
      if (button) button.disabled = false;
      rowStatus(row, error.message);
      return;
    }
    // The unseen count covers the Inbox: an unseen row leaving or entering it moves it.
    if (row.dataset.seen === "0") setUnseen(unseen + (archive ? -1 : 1));
    announce(`${archive ? "Archived" : "Restored"}: ${describe(row)}`);
    removeRow(row);
  }

  async function undo(row) {
    const button = row.querySelector(".undo-form button");
    if (button) button.disabled = true;
    try {
      await post(`/api/activity/${encodeURIComponent(row.dataset.id)}/undo`, {});
    } catch (error) {
      if (button) button.disabled = false;
      rowStatus(row, error.message);
      announce(error.message);
      return;
    }
    announce(`Undone: ${describe(row)}`);
    try {
      const { rows: fresh } = await fetchRows([row.dataset.id]);
      if (fresh[0]) {
        const hadFocus = current === row;
        row.replaceWith(fresh[0]);
        adopt(fresh[0], false);
        rowStatus(fresh[0], "Undone.", true);
        if (hadFocus) focusRow(fresh[0]);
        return;
      }
    } catch (_) { /* The undo itself worked; keep the row and say so. */ }
    if (button) button.closest("form").remove();
    rowStatus(row, "Undone.", true);
  }

  list.addEventListener("submit", (ev) => {
    const form = ev.target;
    const row = form.closest(".event");
    if (!row) return;
    if (form.classList.contains("archive-form")) {
      ev.preventDefault();
      triage(row);
    } else if (form.classList.contains("undo-form")) {
      ev.preventDefault();
      undo(row);
    }
  });

  // --- Keyboard triage ---------------------------------------------------------------------

  let current = null;

  function focusRow(row) {
    if (!row) return;
    if (current && current !== row) current.classList.remove("focused");
    current = row;
    row.classList.add("focused");
    row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
  }

  function focusedRow() {
    const active = document.activeElement && document.activeElement.closest && document.activeElement.closest(".event");
    if (active && list.contains(active)) return active;
    return current && current.isConnected ? current : null;
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const at = all.indexOf(focusedRow());
    const next = at < 0 ? all[step > 0 ? 0 : all.length - 1] : all[Math.min(all.length - 1, Math.max(0, at + step))];
    focusRow(next);
  }

  list.addEventListener("focusin", (ev) => {
    const row = ev.target.closest(".event");
    if (row && row !== current) {
      if (current) current.classList.remove("focused");
      current = row;
      row.classList.add("focused");
    }
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) {
      if (ev.key === "Escape" && target === search) {
        search.blur();
        focusRow(focusedRow() || rows()[0]);
      }
      return;
    }
    if (dialog && dialog.open) return;
    const row = focusedRow();
    switch (ev.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "e": if (row) triage(row); else return; break;
      case "u":
        if (row && row.querySelector(".undo-form")) undo(row);
        else if (row) announce("Nothing to undo on this event.");
        else return;
        break;
      case "o":
      case "Enter": {
        if (!row || target !== row) return;
        const details = row.querySelector("details");
        if (details) details.open = !details.open;
        break;
      }
      case "/": if (search) { search.focus(); search.select(); } break;
      case "?": if (dialog) dialog.showModal(); break;
      default: return;
    }
    ev.preventDefault();
  });

  if (helpButton && dialog) {
    helpButton.hidden = false;
    helpButton.addEventListener("click", () => dialog.showModal());
  }

  // --- New rows without a layout jump ----------------------------------------------------
  // When the top of the list is on screen and the reader is not working inside it, new
  // rows slide in at the top. Otherwise they wait behind a floating "N new events" pill
  // (it overlays the list, so nothing under the reader's eyes moves).

  const held = [];

  function canInsertNow() {
    const top = list.getBoundingClientRect().top;
    const busy = list.contains(document.activeElement) && document.activeElement !== list;
    return top >= 0 && top < window.innerHeight && !busy;
  }

  function showPill() {
    if (!pill) return;
    pill.hidden = held.length === 0;
    pill.textContent = held.length === 1 ? "1 new event — show" : `${held.length} new events — show`;
  }

  function insertNew(fresh) {
    hideEmpty();
    for (const row of fresh) {
      if (rowById(row.dataset.id)) continue;
      insertSorted(row);
      adopt(row, true);
      addTotal(1);
    }
  }

  function receive(fresh) {
    fresh = fresh.filter((row) => !rowById(row.dataset.id) && !held.some((h) => h.dataset.id === row.dataset.id));
    if (!fresh.length) return;
    const text = fresh.length === 1 ? `New event: ${describe(fresh[0])}` : `${fresh.length} new events`;
    if (canInsertNow()) {
      insertNew(fresh);
    } else {
      held.push(...fresh);
      showPill();
    }
    announce(text);
  }

  if (pill) {
    pill.addEventListener("click", () => {
      const fresh = held.splice(0);
      showPill();
      insertNew(fresh);
      list.scrollIntoView({ block: "start", behavior: "smooth" });
      if (fresh[0]) focusRow(rowById(fresh[0].dataset.id));
    });
  }
  window.addEventListener("scroll", () => {
    if (held.length && canInsertNow() && window.scrollY === 0) {
      insertNew(held.splice(0));
      showPill();
    }
  }, { passive: true });

  // --- The live stream (docs/api.md, GET /api/activity/stream) ---------------------------

  let wanted = new Set();
  let wantTimer = 0;

  function want(ids) {
    ids.forEach((id) => wanted.add(id));
    if (!wantTimer) wantTimer = window.setTimeout(loadWanted, 150);
  }

  async function loadWanted() {
    wantTimer = 0;
    const ids = Array.from(wanted);
    wanted = new Set();
    if (!ids.length) return;
    try {
      const { rows: fresh } = await fetchRows(ids);
      receive(fresh);
    } catch (_) { /* A missed row shows on the next reload; the badges are already right. */ }
  }

  async function reload() {
    try {
      const { rows: fresh, total, unseen: count } = await fetchRows(null);
      held.splice(0);
      showPill();
      list.replaceChildren(...fresh);
      fresh.forEach((row) => adopt(row, false));
      current = null;
      setTotal(total);
      setUnseen(count);
      hideEmpty();
      showEmptyIfNeeded();
    } catch (_) { /* Keep what is shown; the next message or reload fixes it. */ }
  }

  function onActivity(data) {
    setUnseen(data.unseenCount, data.workspaces);
    if (!isLive || !data.event || !data.event.id) return;
    if (rowById(data.event.id)) return;
    want([data.event.id]);
  }

  function onState(data) {
    setUnseen(data.unseenCount, data.workspaces);
    const ids = data.eventIds || [];
    if (data.action === "seen") {
      if (data.all) rows().forEach(unhighlight);
      ids.forEach((id) => { const row = rowById(id); if (row && !seenHere.has(id)) unhighlight(row); });
      return;
    }
    // Archived rows leave the Inbox and join the Archive; restored ones the other way.
    const leaves = (data.action === "archived") !== isArchive;
    if (data.all) { reload(); return; }
    if (leaves) {
      ids.forEach((id) => removeRow(rowById(id)));
    } else if (data.action === "archived" || data.action === "restored") {
      const missing = ids.filter((id) => !rowById(id));
      if (missing.length) {
        fetchRows(missing).then(({ rows: fresh }) => {
          hideEmpty();
          fresh.forEach((row) => {
            if (rowById(row.dataset.id)) return;
            insertSorted(row);
            adopt(row, false);
            addTotal(1);
          });
        }).catch(() => {});
      }
    }
  }

  function connect() {
    if (!("EventSource" in window)) return;
    const position = main.dataset.streamPosition;
    const url = "/api/activity/stream" + (position ? "?lastEventId=" + encodeURIComponent(position) : "");
    const source = new EventSource(url);
    const handle = (fn) => (ev) => {
      let data;
      try { data = JSON.parse(ev.data || "{}"); } catch (_) { return; }
      fn(data);
    };
    source.addEventListener("activity", handle(onActivity));
    source.addEventListener("state", handle(onState));
    source.addEventListener("unseen", handle((d) => setUnseen(d.unseenCount, d.workspaces)));
    source.addEventListener("reset", handle(() => reload()));
  }

  // --- Start -----------------------------------------------------------------------------

  localise(document);
  rows().forEach((row) => adopt(row, false));
  window.setInterval(() => localise(list), 60000);
  connect();
})();
