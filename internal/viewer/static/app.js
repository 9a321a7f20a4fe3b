// HPA plate viewer: live updates (server-sent events), filters, keyboard navigation, zoom.
// Served as a file (the Content-Security-Policy allows no inline script).
"use strict";

(function () {
  const body = document.body;
  const pageKind = body.dataset.page;
  const plate = body.dataset.plate || "";
  const liveRegion = document.getElementById("live");

  function say(text) {
    if (liveRegion) liveRegion.textContent = text;
  }

  function enc(s) {
    return encodeURIComponent(s);
  }

  // ---- live updates --------------------------------------------------------------------------
  function openEvents(onSample) {
    if (!window.EventSource) return;
    const es = new EventSource("/events" + (plate ? "?plate=" + enc(plate) : ""));
    es.addEventListener("open", function () {
      body.dataset.live = "on";
      say("Live");
    });
    es.addEventListener("sample", function (e) {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      onSample(ev);
    });
    es.addEventListener("resync", function () {
      location.reload();
    });
    es.addEventListener("error", function () {
      body.dataset.live = "off";
      say("Reconnecting…");
    });
  }

  function debounce(fn, ms) {
    let t = null;
    return function () {
      if (t) clearTimeout(t);
      t = setTimeout(function () {
        t = null;
        fn();
      }, ms);
    };
  }

  function fromHTML(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  if (pageKind === "plates") {
    const refresh = debounce(function () {
      fetch("/?fragment=rows", { credentials: "same-origin" })
        .then(function (r) {
          return r.ok ? r.text() : Promise.reject(r.status);
        })
        .then(function (html) {
          document.getElementById("plates-rows").innerHTML = html;
          say("Updated " + new Date().toLocaleTimeString());
        })
        .catch(function () {});
    }, 300);
    openEvents(refresh);
  }

  if (pageKind === "plate") {
    const grid = document.getElementById("grid");
    const filter = grid ? grid.dataset.filter : "";
    openEvents(function (ev) {
      if (!grid || ev.plate !== plate) return;
      const url = "/plates/" + enc(plate) + "/cards/" + enc(ev.sample_id) + (filter ? "?" + filter : "");
      fetch(url, { credentials: "same-origin" })
        .then(function (r) {
          return r.ok ? r.json() : Promise.reject(r.status);
        })
        .then(function (d) {
          for (const k in d.counts) {
            const el = document.querySelector('[data-count="' + k + '"]');
            if (el) el.textContent = d.counts[k];
          }
          const old = grid.querySelector('li[data-id="' + CSS.escape(d.id) + '"]');
          const bump = function (n) {
            ["shown-n", "total-n"].forEach(function (id) {
              const el = document.getElementById(id);
              if (el) el.textContent = String(Number(el.textContent) + n);
            });
          };
          if (!d.matches) {
            if (old) {
              old.remove();
              bump(-1);
            }
            return;
          }
          if (!old) bump(1);
          const li = fromHTML(d.html);
          if (old) {
            old.replaceWith(li);
          } else {
            const before = d.before ? grid.querySelector('li[data-id="' + CSS.escape(d.before) + '"]') : null;
            grid.insertBefore(li, before);
          }
          const empty = document.getElementById("grid-empty");
          if (empty) empty.remove();
          say("Sample " + d.id + (ev.kind === "error" ? " failed" : " labeled"));
        })
        .catch(function () {});
    });

    // Filters apply as soon as they change.
    const form = document.getElementById("filters");
    if (form) {
      form.querySelectorAll("select, input").forEach(function (el) {
        el.addEventListener("change", function () {
          form.requestSubmit();
        });
      });
      // Empty fields are left out of the URL.
      form.addEventListener("formdata", function (e) {
        for (const [k, val] of Array.from(e.formData.entries())) {
          if (val === "") e.formData.delete(k);
        }
      });
    }

    // Arrow keys move between cards (Up/Down by one row), Home/End to the ends.
    if (grid) {
      grid.addEventListener("keydown", function (e) {
        const links = Array.from(grid.querySelectorAll("a.card-link"));
        const i = links.indexOf(document.activeElement);
        if (i < 0) return;
        let cols = 1;
        while (cols < links.length && links[cols].offsetTop === links[0].offsetTop) cols++;
        let j = i;
        switch (e.key) {
          case "ArrowRight":
            j = i + 1;
            break;
          case "ArrowLeft":
            j = i - 1;
            break;
          case "ArrowDown":
            j = i + cols;
            break;
          case "ArrowUp":
            j = i - cols;
            break;
          case "Home":
            j = 0;
            break;
          case "End":
            j = links.length - 1;
            break;
          default:
            return;
        }
        e.preventDefault();
        j = Math.max(0, Math.min(links.length - 1, j));
        links[j].focus();
      });
    }
  }

  if (pageKind === "sample") {
    const head = document.querySelector("[data-sample]");
    const sampleID = head ? head.dataset.sample : "";
    // A sample still being labeled reloads when its result arrives.
    openEvents(function (ev) {
      if (ev.plate === plate && ev.sample_id === sampleID) location.reload();
    });

    // Zoom and pan, the same on every panel so the channels stay aligned.
    const imgs = Array.from(document.querySelectorAll("img.zoomable"));
    const level = document.getElementById("zoom-level");
    const z = { s: 1, x: 0, y: 0 };
    function apply() {
      imgs.forEach(function (img) {
        img.style.transform = "translate(" + z.x + "px," + z.y + "px) scale(" + z.s + ")";
      });
      if (level) level.textContent = Math.round(z.s * 100) + "%";
    }
    function zoom(f) {
      const s = Math.max(1, Math.min(16, z.s * f));
      z.x *= s / z.s;
      z.y *= s / z.s;
      z.s = s;
      if (s === 1) {
        z.x = 0;
        z.y = 0;
      }
      apply();
    }
    function pan(dx, dy) {
      if (z.s === 1) return;
      z.x += dx;
      z.y += dy;
      apply();
    }
    const zin = document.getElementById("zoom-in");
    const zout = document.getElementById("zoom-out");
    const zreset = document.getElementById("zoom-reset");
    if (zin) zin.addEventListener("click", function () { zoom(1.5); });
    if (zout) zout.addEventListener("click", function () { zoom(1 / 1.5); });
    if (zreset) zreset.addEventListener("click", function () { z.s = 1; z.x = 0; z.y = 0; apply(); });
    document.querySelectorAll(".viewport").forEach(function (vp) {
      vp.addEventListener("wheel", function (e) {
        e.preventDefault();
        zoom(e.deltaY < 0 ? 1.25 : 0.8);
      }, { passive: false });
      let drag = null;
      vp.addEventListener("pointerdown", function (e) {
        drag = { x: e.clientX, y: e.clientY };
        vp.setPointerCapture(e.pointerId);
      });
      vp.addEventListener("pointermove", function (e) {
        if (!drag) return;
        pan(e.clientX - drag.x, e.clientY - drag.y);
        drag = { x: e.clientX, y: e.clientY };
      });
      vp.addEventListener("pointerup", function () { drag = null; });
      vp.addEventListener("pointercancel", function () { drag = null; });
    });

    // Keys: + - 0 zoom; arrows pan a focused image, else go to the previous / next sample;
    // u or Escape goes back to the plate.
    document.addEventListener("keydown", function (e) {
      const t = e.target;
      if (e.altKey || e.ctrlKey || e.metaKey || (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA"))) return;
      const inViewport = t && t.classList && t.classList.contains("viewport");
      const go = function (id) {
        const a = document.getElementById(id);
        if (a) {
          e.preventDefault();
          location.href = a.href;
        }
      };
      switch (e.key) {
        case "+":
        case "=":
          zoom(1.5);
          break;
        case "-":
          zoom(1 / 1.5);
          break;
        case "0":
          z.s = 1; z.x = 0; z.y = 0; apply();
          break;
        case "ArrowLeft":
          if (inViewport && z.s > 1) { e.preventDefault(); pan(40, 0); } else go("prev");
          return;
        case "ArrowRight":
          if (inViewport && z.s > 1) { e.preventDefault(); pan(-40, 0); } else go("next");
          return;
        case "ArrowUp":
          if (inViewport && z.s > 1) { e.preventDefault(); pan(0, 40); }
          return;
        case "ArrowDown":
          if (inViewport && z.s > 1) { e.preventDefault(); pan(0, -40); }
          return;
        case "j":
          go("next");
          return;
        case "k":
          go("prev");
          return;
        case "u":
        case "Escape": {
          const up = document.querySelector('.crumbs a[href^="/plates/"]');
          if (up) location.href = up.href;
          return;
        }
        default:
          return;
      }
      e.preventDefault();
    });
  }

  // The page's handlers are in place (tests wait for this before they press keys).
  body.dataset.ready = "1";
})();
