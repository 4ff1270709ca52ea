// The app's service worker, served at /service-worker.js, after the constants the server puts
// before this code: VERSION, OFFLINE_URL, SHELL (the versioned URLs of the CSS, scripts and
// icons) and ICON (the notifications' icon).
//
// What it keeps: the shell and the offline page (in the language last chosen), nothing else. Pages are never kept (accounts,
// renewals, status, receipts, checkout: every page is personal or may be): a navigation goes to
// the network, and only when the network fails does the offline page answer. Requests other
// than GET (forms, payments) are never touched: no payment is queued or sent again from here.
"use strict";

var CACHE = "topup-shell-" + VERSION;
var KEPT = new Set(SHELL);

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(CACHE).then(function (cache) {
      return cache.addAll(SHELL.concat([OFFLINE_URL]));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (name) {
        return name.indexOf("topup-shell-") === 0 && name !== CACHE;
      }).map(function (name) { return caches.delete(name); }));
    }).then(function () { return self.clients.claim(); })
  );
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return; // forms and payments: the network alone, never queued
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    var answer = fetch(request);
    if (url.pathname.indexOf("/language/") === 0) {
      // Another language was chosen: the offline page follows it (fetched anew, once).
      event.waitUntil(answer.then(function () {
        return caches.open(CACHE).then(function (cache) { return cache.add(OFFLINE_URL); });
      }).catch(function () {}));
    }
    event.respondWith(
      answer.catch(function () {
        return caches.open(CACHE).then(function (cache) { return cache.match(OFFLINE_URL); })
          .then(function (page) { return page || Response.error(); });
      })
    );
    return;
  }
  if (KEPT.has(url.pathname + url.search)) {
    event.respondWith(
      caches.open(CACHE).then(function (cache) {
        return cache.match(request).then(function (found) { return found || fetch(request); });
      })
    );
  }
  // Anything else (live status, partials, the API, receipts' PDFs): the network, not kept.
});

// A reminder sent by Web Push: shown as a notification. Its tag is the reminder's, so the same
// reminder arriving twice replaces the first instead of showing a second one.
self.addEventListener("push", function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = { body: event.data ? event.data.text() : "" };
  }
  var options = { body: data.body || "", icon: ICON, badge: ICON, data: { url: data.url || "/" } };
  if (data.tag) options.tag = data.tag;
  if (data.lang) options.lang = data.lang;
  event.waitUntil(self.registration.showNotification(data.title || "topup", options));
});

// A tap on a notification opens its link, a page of this site only (else the home page).
self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var target = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin);
  if (target.origin !== self.location.origin) target = new URL("/", self.location.origin);
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
      for (var i = 0; i < windows.length; i++) {
        if (windows[i].url === target.href && "focus" in windows[i]) return windows[i].focus();
      }
      return self.clients.openWindow(target.href);
    })
  );
});
