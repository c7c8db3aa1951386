// Charts from data attributes (server-rendered specs), redrawn after htmx swaps; template previews.
(function () {
  const palette = ["#c2410c", "#0f766e", "#1d4ed8", "#b45309", "#7c3aed", "#be123c", "#4d7c0f", "#475569", "#0891b2", "#a16207"];

  function draw(root) {
    if (!window.Chart) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas._chart) canvas._chart.destroy();
      const spec = JSON.parse(canvas.dataset.chart);
      const round = spec.type === "doughnut";
      canvas._chart = new Chart(canvas, {
        type: spec.type,
        data: {
          labels: spec.labels,
          datasets: spec.series.map(function (s, i) {
            return {
              label: s.label,
              data: s.data,
              backgroundColor: round ? palette : palette[i % palette.length],
              borderColor: round ? "#fff" : palette[i % palette.length],
            };
          }),
        },
        options: {
          animation: false,
          maintainAspectRatio: false,
          scales: round ? {} : { x: { stacked: !!spec.stacked }, y: { stacked: !!spec.stacked, beginAtZero: true } },
        },
      });
    });
  }

  function preview() {
    const select = document.getElementById("campaign-template");
    const target = document.getElementById("template-preview");
    if (!select || !target) return;
    const show = function () {
      const option = select.selectedOptions[0];
      if (!option || !option.dataset.preview) { target.innerHTML = ""; return; }
      fetch(option.dataset.preview, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) { target.innerHTML = html; });
    };
    select.addEventListener("change", show);
    show();
  }

  // Typing the days (or the date) of an expiry mode chooses that mode: the number alone would be lost.
  function expiryChoice() {
    document.querySelectorAll("#expiry label").forEach(function (label) {
      const radio = label.querySelector("input[type=radio]");
      if (!radio) return;
      label.querySelectorAll("input:not([type=radio])").forEach(function (input) {
        input.addEventListener("input", function () { radio.checked = true; });
      });
    });
  }

  // Changing a threshold of an RFM preset makes the shop's own (自定义) configuration.
  function rfmCustom() {
    const preset = document.getElementById("rfm-preset");
    if (!preset) return;
    document.querySelectorAll("#rfm input").forEach(function (input) {
      input.addEventListener("input", function () { preset.value = "custom"; });
    });
  }

  // The new-activity form shows the boxes of the chosen type only (without script, all of them: the
  // server reads the chosen type's boxes alone either way).
  function activityType() {
    const select = document.getElementById("activity-type");
    if (!select) return;
    const show = function () {
      document.querySelectorAll("#create-activity-form [data-types]").forEach(function (box) {
        box.hidden = box.dataset.types.split(" ").indexOf(select.value) < 0;
      });
    };
    select.addEventListener("change", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    draw(document); preview(); expiryChoice(); rfmCustom(); activityType();
  });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
})();
