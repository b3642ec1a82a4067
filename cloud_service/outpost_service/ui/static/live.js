// Live parts of a dashboard page: every element with data-live="URL" gets its content
// replaced by that URL's HTML every 1.5 s (one request at a time per element; a 401 means
// the session ended: go to the sign-in form).  Plain JavaScript, nothing to build.
"use strict";
(function () {
  const PERIOD_MS = 1500;
  function follow(element) {
    const url = element.dataset.live;
    async function refresh() {
      try {
        const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (answer.status === 401) {
          window.location.assign("/ui/login?next=" + encodeURIComponent(window.location.pathname));
          return;
        }
        if (answer.ok) {
          element.innerHTML = await answer.text();
          element.dataset.refreshed = String(Date.now());
        }
      } catch (error) {
        // the service is restarting or unreachable: try again next period
      }
      window.setTimeout(refresh, PERIOD_MS);
    }
    window.setTimeout(refresh, PERIOD_MS);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(follow);
  });
})();
