// The overview's stacked chart, drawn with uPlot from the JSON the page carries: the
// Content-Security-Policy allows no inline script, so the data rides in a JSON block.
(function () {
  "use strict";
  var COLORS = { hit: "#2f855a", miss: "#b7791f", blocked: "#c53030", error: "#6b46c1" };

  function draw() {
    var holder = document.getElementById("chart");
    var source = document.getElementById("chart-data");
    if (!holder || !source || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    // Stacked bars: each status is drawn as the running total up to it, tallest first, so
    // that each one's own share shows above the one before.
    var totals = data.x.map(function () { return 0; });
    var stacked = data.series.map(function (status) {
      totals = totals.map(function (value, i) { return value + status.values[i]; });
      return totals;
    });
    var series = [{ label: "time" }];
    var columns = [data.x];
    for (var i = data.series.length - 1; i >= 0; i--) {
      var own = data.series[i].values;
      series.push({
        label: data.series[i].label,
        stroke: COLORS[data.series[i].label],
        fill: COLORS[data.series[i].label],
        paths: uPlot.paths.bars({ size: [0.9, 60] }),
        points: { show: false },
        value: (function (values) {
          return function (u, v, s, index) { return index == null ? "" : values[index]; };
        })(own),
      });
      columns.push(stacked[i]);
    }
    var chart = new uPlot(
      {
        width: holder.clientWidth || 800,
        height: 300,
        series: series,
        scales: { x: { time: true } },
        axes: [{}, { label: "retrievals" }],
        cursor: { drag: { x: false, y: false } },
      },
      columns,
      holder
    );
    window.addEventListener("resize", function () {
      chart.setSize({ width: holder.clientWidth || 800, height: 300 });
    });
  }

  document.addEventListener("DOMContentLoaded", draw);
})();
