// The tabpy status page: theme switch, endpoint search, local times.
// Served inline and allowed by its hash (tabpy.server.index), so any edit changes the
// Content-Security-Policy by itself. The page is complete without this script; nothing here
// builds HTML from strings.
"use strict";

(function () {
  var THEMES = ["auto", "light", "dark"];
  var THEME_NAMES = { auto: "automatic", light: "light", dark: "dark" };
  var root = document.documentElement;

  function storedTheme() {
    try {
      var value = window.localStorage.getItem("tabpy-theme");
      return THEMES.indexOf(value) >= 0 ? value : "auto";
    } catch (error) {
      return "auto"; // storage disabled: follow the browser
    }
  }

  function applyTheme(theme) {
    if (theme === "auto") {
      delete root.dataset.theme;
    } else {
      root.dataset.theme = theme;
    }
  }

  // Before the first paint, so a dark-theme reader never sees a light flash.
  applyTheme(storedTheme());

  function setUpTheme() {
    var button = document.getElementById("theme");
    if (!button) return;
    function show(theme) {
      button.textContent = "Theme: " + THEME_NAMES[theme];
      button.setAttribute("aria-label", "Colour theme: " + THEME_NAMES[theme] + ". Change theme");
    }
    show(storedTheme());
    button.hidden = false;
    button.addEventListener("click", function () {
      var next = THEMES[(THEMES.indexOf(storedTheme()) + 1) % THEMES.length];
      try {
        window.localStorage.setItem("tabpy-theme", next);
      } catch (error) {
        /* not remembered, still applied */
      }
      applyTheme(next);
      show(next);
    });
  }

  function setUpSearch() {
    var box = document.querySelector(".search");
    var input = document.getElementById("search");
    var status = document.getElementById("search-status");
    var cards = Array.prototype.slice.call(document.querySelectorAll(".endpoint"));
    var json = document.getElementById("endpoints-json");
    if (!box || !input || cards.length === 0) return;
    var fullDocument = null;
    try {
      fullDocument = JSON.parse(json.textContent);
    } catch (error) {
      fullDocument = null; // the JSON view then stays unfiltered
    }
    box.hidden = false;

    function filter() {
      var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      var names = {};
      cards.forEach(function (card) {
        var text = card.dataset.search || "";
        var match = terms.every(function (term) { return text.indexOf(term) >= 0; });
        card.hidden = !match;
        if (match) {
          shown += 1;
          names[card.dataset.name] = true;
        }
      });
      if (terms.length === 0) {
        status.textContent = "";
      } else if (shown === 0) {
        status.textContent = "No endpoint matches \u201c" + input.value.trim() + "\u201d.";
      } else {
        status.textContent = "Showing " + shown + " of " + cards.length + " endpoints.";
      }
      if (fullDocument && json) {
        var subset = {};
        Object.keys(fullDocument).forEach(function (name) {
          if (terms.length === 0 || names[name]) subset[name] = fullDocument[name];
        });
        json.textContent = JSON.stringify(subset, null, 2);
      }
    }

    input.addEventListener("input", filter);
    input.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && input.value) {
        input.value = "";
        filter();
        event.preventDefault();
      }
    });
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      var typing = target && (target.isContentEditable ||
        /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
      if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
        event.preventDefault();
        input.focus();
        input.select();
      }
    });
    if (input.value) filter(); // the browser restored a previous search
  }

  function localTimes() {
    var times = document.querySelectorAll("time[datetime]");
    Array.prototype.forEach.call(times, function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      element.title = element.textContent;
      element.textContent = moment.toLocaleString();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpTheme();
    setUpSearch();
    localTimes();
  });
})();
