// porta dashboard. It reads one snapshot of the server per second from
// "events" (server-sent events), keeps five minutes of history, computes
// rates from successive snapshots and draws them as SVG charts. It has no
// dependencies and loads nothing from elsewhere.
'use strict';

(() => {
  const HISTORY_MS = 5 * 60 * 1000; // how much history the charts show
  const GAP_MS = 3500; // a longer silence between snapshots breaks the lines
  const STALE_MS = 4000; // no snapshot for this long: say so
  const RECONNECT_MS = 5000; // retry a stream the server refused
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const W = 600; // the charts' coordinates: W wide, H high, stretched to fit
  const H = 100;

  const $ = (id) => document.getElementById(id);

  // Formatting.
  const intFormat = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => intFormat.format(n);

  // short shows a number with three significant digits at most, and no
  // ".0".
  const short = (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(1).replace(/\.0$/, ''));

  function fmtCompact(n) {
    if (!isFinite(n)) return '–';
    const units = ['', 'k', 'M', 'G', 'T'];
    let i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) {
      n /= 1000;
      i++;
    }
    if (i === 0) return n >= 10 || n === Math.round(n) ? String(Math.round(n)) : n.toFixed(1);
    return short(n) + units[i];
  }

  function fmtBytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    if (i === 0) return Math.round(n) + ' B';
    return short(n) + ' ' + units[i];
  }

  function fmtSeconds(s) {
    if (!s) return '0';
    if (s < 1e-3) return (s * 1e6).toFixed(s < 1e-5 ? 1 : 0) + 'µs';
    if (s < 1) return (s * 1e3).toFixed(s < 1e-2 ? 2 : 1) + 'ms';
    return s.toFixed(2) + 's';
  }

  function fmtAge(s) {
    s = Math.floor(s);
    const pad = (n) => String(n).padStart(2, '0');
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + pad(Math.floor(s / 60) % 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor(s / 3600) % 24 + 'h';
  }

  // setNum shows a number and keeps its exact value in data-value, for
  // scripts and tests that read the page.
  function setNum(id, value, text) {
    const el = $(id);
    el.dataset.value = String(value);
    el.textContent = text === undefined ? fmtInt(value) : text;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  // niceCeil rounds v up to 1, 2 or 5 times a power of ten.
  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const f of [1, 2, 5, 10]) {
      if (v <= f * p * (1 + 1e-9)) return f * p;
    }
    return 10 * p;
  }

  // niceCeilBytes rounds v up to 1, 2 or 5 times a power of ten of bytes,
  // KiB, MiB or GiB, so that the scale reads 100 KiB, not 97.7 KiB.
  function niceCeilBytes(v) {
    const unit = Math.pow(1024, Math.max(0, Math.min(3, Math.floor(Math.log(v) / Math.log(1024)))));
    return niceCeil(v / unit) * unit;
  }

  // A Chart draws some series of the history as lines over time, the
  // newest at the right edge.
  class Chart {
    constructor(id, series, fmt, least, nice = niceCeil) {
      const fig = $(id);
      this.series = series; // [{key, label, area}]
      this.fmt = fmt;
      this.least = least; // the smallest top of the scale
      this.nice = nice; // rounds the top of the scale up
      const plot = el('div', 'plot');
      this.svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' });
      for (const y of [0, H / 2, H]) {
        this.svg.append(svgEl('line', { x1: 0, x2: W, y1: y, y2: y, class: 'gridline', 'vector-effect': 'non-scaling-stroke' }));
      }
      this.paths = series.map((s, i) => {
        const area = s.area ? svgEl('path', { class: `area s${i}` }) : null;
        const line = svgEl('path', { class: `series s${i}`, 'vector-effect': 'non-scaling-stroke' });
        if (area) this.svg.append(area);
        this.svg.append(line);
        return { area, line };
      });
      this.ymax = el('span', 'ymax');
      this.ymid = el('span', 'ymid');
      plot.append(this.svg, this.ymax, this.ymid);
      const axis = el('div', 'axis');
      axis.append(el('span', '', '5 min ago'), el('span', '', 'now'));
      fig.append(plot, axis);
      this.values = series.map((s, i) => {
        const item = el('span');
        const v = el('b');
        item.append(el('i', `k${i}`), s.label + ' ', v);
        fig.querySelector('.legend').append(item);
        return v;
      });
    }

    draw(points, now) {
      let top = 0;
      for (const p of points) {
        for (const s of this.series) {
          if (p[s.key] !== null) top = Math.max(top, p[s.key]);
        }
      }
      top = this.nice(Math.max(top, this.least));
      const x = (t) => (W - ((now - t) / HISTORY_MS) * W).toFixed(1);
      const y = (v) => (H - (v / top) * H).toFixed(2);
      this.series.forEach((s, i) => {
        let line = '';
        let area = '';
        let runStart = null;
        let last = null;
        for (const p of points) {
          const v = p[s.key];
          if (v === null) continue;
          const broken = last === null || p.t - last.t > GAP_MS;
          if (broken) {
            if (runStart !== null) area += `L${x(last.t)} ${H}L${x(runStart)} ${H}Z`;
            runStart = p.t;
          }
          const seg = `${broken ? 'M' : 'L'}${x(p.t)} ${y(v)}`;
          line += seg;
          area += seg;
          last = p;
        }
        if (runStart !== null) area += `L${x(last.t)} ${H}L${x(runStart)} ${H}Z`;
        this.paths[i].line.setAttribute('d', line);
        if (this.paths[i].area) this.paths[i].area.setAttribute('d', area);
        const latest = points.length ? points[points.length - 1][s.key] : null;
        this.values[i].textContent = latest === null ? '–' : this.fmt(latest);
      });
      this.ymax.textContent = this.fmt(top);
      this.ymid.textContent = this.fmt(top / 2);
    }
  }

  const perSecond = (fmt) => (v) => fmt(v) + '/s';
  const charts = [
    new Chart('chart-conns', [{ key: 'open', label: 'open', area: true }], fmtCompact, 1),
    new Chart('chart-msgs', [
      { key: 'msgIn', label: 'in', area: true },
      { key: 'msgOut', label: 'out' },
    ], perSecond(fmtCompact), 1),
    new Chart('chart-bytes', [
      { key: 'bytesIn', label: 'in', area: true },
      { key: 'bytesOut', label: 'out' },
    ], perSecond(fmtBytes), 1024, niceCeilBytes),
    new Chart('chart-latency', [
      { key: 'p50', label: 'p50', area: true },
      { key: 'p99', label: 'p99' },
    ], fmtSeconds, 1e-5),
  ];

  let history = []; // {t, open, msgIn, msgOut, bytesIn, bytesOut, p50, p99}
  let prev = null; // the previous snapshot's time and totals
  let lastSeen = 0; // Date.now() of the last snapshot

  function setStatus(text, kind) {
    const s = $('status');
    s.textContent = text;
    s.className = 'pill ' + kind;
  }

  function onSnapshot(s) {
    lastSeen = Date.now();
    const t = Date.parse(s.time);
    const tot = s.totals;
    const point = { t, open: tot.conns_open, msgIn: null, msgOut: null, bytesIn: null, bytesOut: null, p50: null, p99: null };
    if (prev && t > prev.t) {
      const dt = (t - prev.t) / 1000;
      // A counter that went down belongs to a new server: no rate.
      const rate = (k) => (tot[k] >= prev.tot[k] ? (tot[k] - prev.tot[k]) / dt : null);
      point.msgIn = rate('messages_in');
      point.msgOut = rate('messages_out');
      point.bytesIn = rate('bytes_in');
      point.bytesOut = rate('bytes_out');
    }
    if (s.latency.count > 0) {
      point.p50 = s.latency.p50_seconds;
      point.p99 = s.latency.p99_seconds;
    }
    prev = { t, tot };
    history.push(point);
    while (history.length && history[0].t < t - HISTORY_MS) history.shift();

    setStatus(s.ready ? 'ready' : 'not ready', s.ready ? 'ok' : 'warn');
    $('updated').textContent = 'updated ' + new Date(t).toLocaleTimeString();
    renderTotals(s, point);
    for (const c of charts) c.draw(history, t);
    renderListeners(s.listeners);
    renderReasons(s.closed);
    renderConns(s.conns, tot.conns_open);
  }

  function renderTotals(s, point) {
    const tot = s.totals;
    setNum('conns-open', tot.conns_open);
    setNum('conns-total', tot.conns_total);
    setNum('conns-rejected', tot.conns_rejected);
    setNum('messages-in', tot.messages_in);
    setNum('messages-out', tot.messages_out);
    setNum('bytes-in', tot.bytes_in, fmtBytes(tot.bytes_in));
    setNum('bytes-out', tot.bytes_out, fmtBytes(tot.bytes_out));
    const rate = (id, v, fmt) => setNum(id, v === null ? '' : v, v === null ? '–' : fmt(v));
    rate('msg-rate-in', point.msgIn, fmtCompact);
    rate('msg-rate-out', point.msgOut, fmtCompact);
    rate('byte-rate-in', point.bytesIn, fmtBytes);
    rate('byte-rate-out', point.bytesOut, fmtBytes);

    const lat = s.latency;
    $('lat-window').textContent = lat.count
      ? `last ${Math.round(lat.window_seconds)}s, ${fmtInt(lat.count)} messages`
      : 'no messages lately';
    for (const q of ['p50', 'p90', 'p99', 'max']) {
      const v = lat[q + '_seconds'];
      setNum('lat-' + q, v, lat.count ? fmtSeconds(v) : '–');
    }

    const slow = s.closed.find((r) => r.reason === 'slow_consumer');
    setNum('errors', tot.errors);
    setNum('slow-consumers', slow ? slow.count : 0);
    setNum('panics', tot.panics);
  }

  function cells(row, values) {
    for (const [text, cls] of values) row.append(el('td', cls, text));
  }

  function emptyRow(cols, text) {
    const tr = el('tr');
    const td = el('td', 'empty', text);
    td.colSpan = cols;
    tr.append(td);
    return tr;
  }

  function renderListeners(listeners) {
    const body = $('listeners').tBodies[0];
    const rows = listeners.map((l) => {
      const tr = el('tr');
      cells(tr, [
        [l.addr, ''],
        [l.packet ? '–' : fmtInt(l.conns_open), 'num'],
        [l.packet ? '–' : fmtInt(l.conns_total), 'num'],
        [l.packet ? fmtInt(l.datagrams) : '–', 'num'],
      ]);
      return tr;
    });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(4, 'not serving')]));
  }

  function renderReasons(closed) {
    const top = Math.max(1, ...closed.map((r) => r.count));
    const items = closed.map((r) => {
      const li = el('li', r.count ? '' : 'zero');
      const bar = el('span', 'bar');
      const fill = el('span', r.error ? 'fill err' : 'fill');
      fill.style.width = ((r.count / top) * 100).toFixed(1) + '%';
      bar.append(fill);
      li.append(el('span', '', r.reason.replaceAll('_', ' ')), bar, el('span', 'n', fmtInt(r.count)));
      return li;
    });
    $('reasons').replaceChildren(...items);
  }

  function renderConns(conns, open) {
    const body = $('conns').tBodies[0];
    const rows = conns.map((c) => {
      const tr = el('tr');
      cells(tr, [
        [c.peer, ''],
        [c.listener, 'muted'],
        [fmtAge(c.age_seconds), 'num'],
        [fmtInt(c.messages_in), 'num'],
        [fmtInt(c.messages_out), 'num'],
        [fmtBytes(c.bytes_in), 'num'],
        [fmtBytes(c.bytes_out), 'num'],
        [fmtAge(c.idle_seconds), 'num'],
      ]);
      return tr;
    });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(8, 'no open connections')]));
    $('conns-note').textContent = conns.length < open
      ? `(the oldest ${fmtInt(conns.length)} of ${fmtInt(open)})`
      : conns.length ? '(oldest first)' : '';
  }

  function connect() {
    const es = new EventSource('events');
    es.onmessage = (e) => onSnapshot(JSON.parse(e.data));
    es.onerror = () => {
      setStatus('disconnected', 'bad');
      if (es.readyState === EventSource.CLOSED) {
        // Refused (such as too many dashboards): the browser gives up.
        setTimeout(connect, RECONNECT_MS);
      }
    };
  }

  setInterval(() => {
    if (lastSeen && Date.now() - lastSeen > STALE_MS && $('status').className !== 'pill bad') {
      setStatus('no data', 'bad');
    }
  }, 1000);
  connect();
})();
