/* roomcast episode page: seeking, word highlighting, transcript search, deep links. No dependencies. */
(function () {
  "use strict";
  var audio = document.getElementById("player");
  var main = document.querySelector("main.episode");
  if (!audio || !main) { return; }
  var root = document.documentElement;
  var spans = [];
  var starts = null;
  var ends = null;
  var current = -1;
  var currentTurn = null;
  var playheads = document.querySelectorAll(".timeline .playhead");
  var width = 0;
  var svg = document.querySelector(".timeline svg");
  if (svg) { width = svg.viewBox.baseVal.width; }
  var follow = document.getElementById("follow");

  /* "754", "754.5", "12:34", "1:02:03" or "1h2m3s" as seconds; null when it is none of these. */
  function parseTime(text) {
    text = decodeURIComponent(text || "").trim();
    var m = /^(\d+(?:\.\d+)?)s?$/.exec(text);
    if (m) { return parseFloat(m[1]); }
    m = /^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$/.exec(text);
    if (m) { return (parseInt(m[1] || "0", 10) * 3600) + parseInt(m[2], 10) * 60 + parseFloat(m[3]); }
    m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(text);
    if (m && (m[1] || m[2] || m[3])) {
      return parseInt(m[1] || "0", 10) * 3600 + parseInt(m[2] || "0", 10) * 60 + parseFloat(m[3] || "0");
    }
    return null;
  }

  function hashTime(hash) {
    var m = /(?:^#|&)t=([^&]+)/.exec(hash || "");
    return m ? parseTime(m[1]) : null;
  }

  function seek(seconds) {
    if (seconds === null || isNaN(seconds)) { return; }
    audio.currentTime = Math.max(0, seconds);
    update();
  }

  function clockText(seconds) {
    var s = Math.floor(seconds);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var r = s % 60;
    var mm = (h && m < 10 ? "0" : "") + m;
    return (h ? h + ":" : "") + mm + ":" + (r < 10 ? "0" : "") + r;
  }

  /* The index of the last word starting at or before t (-1 before the first). */
  function wordAt(t) {
    var cs = t * 100 + 1;
    var lo = 0;
    var hi = starts.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (starts[mid] <= cs) { lo = mid + 1; } else { hi = mid; }
    }
    return lo - 1;
  }

  function highlight(index) {
    if (index === current) { return; }
    if (current >= 0) { spans[current].classList.remove("current"); }
    current = index;
    if (index < 0) { return; }
    var span = spans[index];
    span.classList.add("current");
    var turn = span.parentNode.parentNode;
    if (turn !== currentTurn) {
      if (currentTurn) { currentTurn.classList.remove("playing"); }
      currentTurn = turn;
      turn.classList.add("playing");
    }
    if (follow && follow.checked && !audio.paused && !turn.hidden) {
      var box = span.getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) { span.scrollIntoView({ block: "center" }); }
    }
  }

  function update() {
    var t = audio.currentTime;
    if (starts) { highlight(wordAt(t)); }
    if (width) {
      var x = String(Math.min(width, t * 10));
      for (var i = 0; i < playheads.length; i++) {
        playheads[i].setAttribute("x1", x);
        playheads[i].setAttribute("x2", x);
      }
    }
  }

  function tick() {
    update();
    if (!audio.paused) { window.requestAnimationFrame(tick); }
  }

  audio.addEventListener("timeupdate", update);
  audio.addEventListener("seeked", update);
  audio.addEventListener("play", function () { window.requestAnimationFrame(tick); });

  /* Every link to a moment seeks the player and keeps the address shareable. */
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[href^='#t=']") : null;
    if (link) {
      event.preventDefault();
      history.replaceState(null, "", link.getAttribute("href"));
      var exact = link.getAttribute("data-seek");
      seek(exact !== null ? parseFloat(exact) : hashTime(link.getAttribute("href")));
      return;
    }
    if (starts && event.target.parentNode && event.target.parentNode.classList &&
        event.target.parentNode.classList.contains("words")) {
      var index = event.target.wordIndex;
      if (typeof index === "number") { seek(starts[index] / 100); }
    }
  });

  window.addEventListener("hashchange", function () { seek(hashTime(location.hash)); });

  var lanes = document.querySelectorAll(".timeline svg");
  for (var l = 0; l < lanes.length; l++) {
    lanes[l].addEventListener("click", function (event) {
      var box = this.getBoundingClientRect();
      if (box.width > 0) { seek(((event.clientX - box.left) / box.width) * (width / 10)); }
    });
  }

  var copy = document.querySelector(".copy-moment");
  var copyStatus = document.querySelector(".copy-status");
  if (copy && navigator.clipboard) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      var t = Math.floor(audio.currentTime);
      var url = location.href.split("#")[0] + "#t=" + t;
      navigator.clipboard.writeText(url).then(function () {
        copyStatus.textContent = "Link to " + clockText(t) + " copied.";
      }, function () {
        copyStatus.textContent = url;
      });
    });
  }

  /* Search: only the turns holding every word typed stay shown. */
  var search = document.getElementById("search");
  var turns = Array.prototype.slice.call(document.querySelectorAll(".turns .turn"));
  var texts = null;
  function fold(text) {
    return text.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "");
  }
  function filter() {
    var terms = fold(search.value).split(/\s+/).filter(Boolean);
    if (!texts) { texts = turns.map(function (turn) { return fold(turn.textContent); }); }
    var shown = 0;
    for (var i = 0; i < turns.length; i++) {
      var hit = terms.every(function (term) { return texts[i].indexOf(term) >= 0; });
      turns[i].hidden = !hit;
      if (hit) { shown++; }
    }
    var status = document.querySelector(".search-status");
    status.textContent = terms.length ? shown + " of " + turns.length + " turns match" : "";
  }
  if (search) {
    var timer = 0;
    search.parentNode.hidden = false;
    search.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(filter, turns.length > 500 ? 120 : 0);
    });
  }

  function ready() {
    root.setAttribute("data-ready", String(performance.now()));
    var t = hashTime(location.hash);
    if (t !== null) { seek(t); }
  }

  var timesUrl = main.getAttribute("data-word-times");
  if (!timesUrl) { ready(); return; }
  fetch(timesUrl).then(function (response) {
    if (!response.ok) { throw new Error("word times: HTTP " + response.status); }
    return response.json();
  }).then(function (times) {
    spans = Array.prototype.slice.call(document.querySelectorAll(".turns .words > span"));
    if (times.count !== spans.length) { spans = []; return; }
    for (var i = 0; i < spans.length; i++) { spans[i].wordIndex = i; }
    starts = times.start;
    ends = times.end;
    root.classList.add("words-ready");
    update();
  }).catch(function () {
    spans = [];
  }).then(ready);
}());
