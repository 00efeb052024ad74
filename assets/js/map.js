// The branches map: markers for the branches listed on the page, over tiles from the
// server named in data-tiles. The list stays the source of truth; when the tiles (or
// Leaflet) fail, the page still shows it.
(function () {
  "use strict";
  var el = document.getElementById("branch-map");
  if (!el || typeof L === "undefined") return;
  var map = L.map(el, { attributionControl: true });
  L.tileLayer(el.dataset.tiles, {
    maxZoom: 19,
    attribution: "&copy; OpenStreetMap",
  }).addTo(map);
  var points = [];
  document.querySelectorAll("#branch-list .branch[data-lat]").forEach(function (li) {
    var lat = parseFloat(li.dataset.lat), lon = parseFloat(li.dataset.lon);
    if (isNaN(lat) || isNaN(lon)) return;
    // Leaflet reads a string popup as HTML: hand it an element holding the name as text.
    var popup = document.createElement("span");
    popup.className = "branch-popup";
    popup.textContent = li.dataset.name;
    L.marker([lat, lon], { title: li.dataset.name }).addTo(map).bindPopup(popup);
    points.push([lat, lon]);
  });
  if (points.length) {
    map.fitBounds(points, { maxZoom: 15, padding: [24, 24] });
  } else {
    map.setView([41.3111, 69.2797], 11); // Tashkent
  }
  el.dataset.ready = String(points.length);
})();
