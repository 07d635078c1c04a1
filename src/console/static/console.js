// graphgate audit console: progressive only, every page works without it.
// Filters apply as soon as a list changes; times also show in the viewer's local time.
"use strict";
document.documentElement.dataset.js = "on";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("filters");
  if (form) {
    for (const select of form.querySelectorAll("select[data-autosubmit]")) {
      select.addEventListener("change", () => form.requestSubmit());
    }
  }
  for (const t of document.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!Number.isNaN(d.getTime())) t.title = d.toLocaleString();
  }
});
