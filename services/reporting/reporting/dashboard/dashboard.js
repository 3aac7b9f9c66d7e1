// Draws the dashboard's charts from the report in the page (#dashboard-data),
// with Apache ECharts' SVG renderer: every number a chart shows is an SVG
// <text>, beside the same numbers in the section's table. No animation, so a
// chart is complete when drawn. Each drawn chart is marked data-drawn="true".
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('dashboard-data').textContent || '{}');
  var rows = data.rows || [];
  var palette = ['#3c6fd6', '#e07b39', '#2f9e6e', '#b5477a', '#7a5cc9', '#8c8c3a'];

  function draw(id, option) {
    var el = document.getElementById(id);
    if (!el || rows.length === 0) {
      return;
    }
    var chart = echarts.init(el, null, { renderer: 'svg' });
    option.animation = false;
    option.color = palette;
    option.tooltip = option.tooltip || { trigger: 'axis' };
    chart.setOption(option);
    el.dataset.drawn = 'true';
    window.addEventListener('resize', function () { chart.resize(); });
  }

  // The value axis carries no numbers of its own: every bar is labelled
  // with its value, so the only numbers in a chart are the data's.
  function valueAxis() {
    return { type: 'value', axisLabel: { show: false }, splitLine: { lineStyle: { color: '#eef0f4' } } };
  }

  function bars(name, values, format) {
    return {
      name: name, type: 'bar', data: values, barMaxWidth: 28,
      label: { show: true, position: 'top', fontSize: 11, formatter: function (p) { return format(p.value); } }
    };
  }

  var count = function (v) { return String(v); };
  var secs = function (v) { return v === null || v === undefined ? '' : v.toFixed(3) + ' s'; };
  var dollars = function (v) {
    return v === null || v === undefined ? '' : v.toLocaleString('en-US', { style: 'currency', currency: 'USD' });
  };

  // Funnel: one group of bars per step, one bar per source.
  var steps = [
    ['leads', 'Leads'], ['rejected', 'Rejected'], ['contacts', 'Contacts'],
    ['active_clients', 'Active clients'], ['transactions', 'Transactions'], ['closings', 'Closings']
  ];
  draw('funnel-chart', {
    legend: { top: 0 },
    grid: { left: 10, right: 10, top: 36, bottom: 24, containLabel: true },
    xAxis: { type: 'category', data: steps.map(function (s) { return s[1]; }) },
    yAxis: valueAxis(),
    series: rows.map(function (r) {
      return bars(r.source, steps.map(function (s) { return r[s[0]]; }), count);
    })
  });

  // Speed to lead: p50 and p90 per source, in seconds.
  var ms = function (v) { return v === null || v === undefined ? null : v / 1000; };
  draw('speed-chart', {
    legend: { top: 0 },
    grid: { left: 10, right: 10, top: 36, bottom: 24, containLabel: true },
    xAxis: { type: 'category', data: rows.map(function (r) { return r.source; }) },
    yAxis: valueAxis(),
    series: [
      bars('p50', rows.map(function (r) { return ms(r.speed_to_lead.p50_ms); }), secs),
      bars('p90', rows.map(function (r) { return ms(r.speed_to_lead.p90_ms); }), secs)
    ]
  });

  // ROI: spend against the brokerage's net, per source, in dollars.
  var minor = function (v) { return v === null || v === undefined ? null : v / 100; };
  draw('roi-chart', {
    legend: { top: 0 },
    grid: { left: 10, right: 10, top: 36, bottom: 24, containLabel: true },
    xAxis: { type: 'category', data: rows.map(function (r) { return r.source; }) },
    yAxis: valueAxis(),
    series: [
      bars('spend', rows.map(function (r) { return minor(r.spend_minor); }), dollars),
      bars('brokerage net', rows.map(function (r) { return minor(r.brokerage_net_minor); }), dollars)
    ]
  });
})();
