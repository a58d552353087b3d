// reconciler console: live refresh, the only script. Every element with data-refresh="/path" is re-fetched
// as an HTML fragment (rendered and escaped by the daemon) every two seconds while the page is visible.
// No data is read from the page except those same-site paths, and nothing runs without this file.
"use strict";
(function () {
  var INTERVAL_MS = 2000;
  var last = new WeakMap(); // element -> the fragment it shows

  function sameSite(url) {
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" && url.indexOf("\\") < 0;
  }

  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    if (!sameSite(url) || el.getAttribute("data-busy") === "1") {
      return;
    }
    el.setAttribute("data-busy", "1");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" }, redirect: "error" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        if (html === last.get(el) || el.contains(document.activeElement)) {
          return; // unchanged, or the reader is on a control inside it: leave it as it is
        }
        el.innerHTML = html;
        last.set(el, html);
        el.setAttribute("data-refreshed", String(Date.now()));
        el.removeAttribute("data-stale");
      })
      .catch(function () {
        el.setAttribute("data-stale", "1"); // keep the last view; the next tick tries again
      })
      .then(function () {
        el.removeAttribute("data-busy");
      });
  }

  function start() {
    var regions = document.querySelectorAll("[data-refresh]");
    if (!regions.length || typeof window.fetch !== "function") {
      return;
    }
    window.setInterval(function () {
      if (document.hidden) {
        return;
      }
      Array.prototype.forEach.call(regions, refresh);
    }, INTERVAL_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
