// The renewal's pages, live: Server-Sent Events say when the renewal moved, then the page's live
// block is fetched again (the same view as the page, X-Topup-Partial). Without EventSource, or
// when the server has too many live pages open, the block is fetched every few seconds instead.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root || !root.dataset.live) return;
  var block = root.dataset.liveBlock;
  var pollMs = 5000;
  var source = null;
  var timer = null;
  var finished = false;
  var leaving = false;

  // The page moves on once: the end event and a block fetched just before it may both name
  // the next page, and a second navigation would abort the first.
  function leave(url) {
    if (leaving) return;
    leaving = true;
    stop();
    location.assign(url);
  }

  function replaceBlock(html) {
    var region = root.querySelector("[data-live-region]");
    if (!region) return;
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var fresh = holder.querySelector("[data-live-region]");
    // The region stays (it is the live region screen readers listen to); its content changes.
    if (fresh && fresh.innerHTML !== region.innerHTML) region.innerHTML = fresh.innerHTML;
  }

  function refresh() {
    return fetch(location.pathname, {
      headers: { "X-Topup-Partial": block },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (answer) {
      if (leaving) return;
      if (answer.redirected) { leave(answer.url); return; }
      if (!answer.ok) return;
      return answer.text().then(replaceBlock);
    }).catch(function () { /* offline for a moment: the next event or poll tries again */ });
  }

  function stop() {
    finished = true;
    if (source) { source.close(); source = null; }
    if (timer) { clearInterval(timer); timer = null; }
  }

  function poll() {
    if (timer || finished) return;
    timer = setInterval(refresh, pollMs);
  }

  if (!("EventSource" in window)) { poll(); return; }
  source = new EventSource(root.dataset.live);
  source.addEventListener("change", function () { refresh(); });
  source.addEventListener("end", function (event) {
    var next = event.data;
    if (next && next.charAt(0) === "/" && next.charAt(1) !== "/") { leave(next); return; }
    stop();
    refresh();
  });
  source.addEventListener("error", function () {
    // Closed for good (refused, e.g. too many live pages): poll instead. Otherwise the browser
    // reconnects by itself after the server's retry delay.
    if (source && source.readyState === EventSource.CLOSED) { source = null; poll(); }
  });
})();
