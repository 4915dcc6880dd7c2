// kubeinfer web page: lists the served models and runs inferences through the Open Inference Protocol.
// Every piece of data goes into the DOM through textContent or attributes, never as HTML.
(function () {
  'use strict';

  var MAX_SHOWN = 2000;      // output elements shown before truncating
  var MAX_PREFILL = 100000;  // example elements generated per input

  var $ = function (id) { return document.getElementById(id); };
  // log.js (loaded first) builds DOM nodes, adds the API key to requests and refreshes the prediction log.
  var page = window.kubeinfer;
  var models = [];
  var metaCache = {};        // "model/version" -> metadata, fetched from the server
  var current = null;        // metadata the form was built from
  var busy = false;

  var el = page.el;
  var clear = page.clear;

  function shapeText(shape) { return '[' + (shape || []).join(', ') + ']'; }

  function tensorList(tensors) {
    var ul = el('ul', { cls: 'tensors' });
    (tensors || []).forEach(function (t) {
      ul.appendChild(el('li', null, [
        el('code', { text: String(t.name) }), ' ',
        el('span', { cls: 'dt', text: String(t.datatype) }), ' ',
        el('span', { cls: 'shape', text: shapeText(t.shape) })
      ]));
    });
    return ul;
  }

  function sortedVersions(m) {
    return (m.versions || []).map(String).sort(function (a, b) {
      var x = Number(a), y = Number(b);
      return (isNaN(x) || isNaN(y)) ? (a < b ? -1 : a > b ? 1 : 0) : x - y;
    });
  }

  // ---- errors
  function showError(msg) { $('error').textContent = msg; }
  function clearError() { $('error').textContent = ''; }

  // ---- server info and readiness
  function loadServer() {
    fetch('/v2', { headers: page.headers({ Accept: 'application/json' }) })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (s) {
        var text = 'Server: ' + (s.name || '?') + ' ' + (s.version || '');
        if (Array.isArray(s.extensions) && s.extensions.length) text += ' · extensions: ' + s.extensions.join(', ');
        $('server-info').textContent = text;
      })
      .catch(function (e) { $('server-info').textContent = 'Server: metadata unavailable (' + e.message + ')'; });
  }

  function setReady(state, text) {
    var b = $('ready');
    b.setAttribute('data-state', state);
    b.textContent = text;
  }

  function checkReady() {
    fetch('/v2/health/ready', { cache: 'no-store' })
      .then(function (r) { setReady(r.status === 200 ? 'ready' : 'down', r.status === 200 ? 'ready' : 'not ready (' + r.status + ')'); })
      .catch(function () { setReady('down', 'unreachable'); });
  }

  // ---- model table
  function loadModels() {
    var node = $('models');
    try {
      var parsed = JSON.parse(node ? node.textContent : '[]');
      if (!Array.isArray(parsed)) throw new Error('not a JSON array');
      models = parsed.filter(function (m) { return m && typeof m.name === 'string'; });
    } catch (e) {
      models = [];
      showError('The model list embedded in the page is unreadable: ' + e.message);
    }
  }

  function renderTable() {
    var body = $('models-body');
    clear(body);
    $('models-empty').hidden = models.length > 0;
    $('models-table').hidden = models.length === 0;
    $('infer-form').hidden = models.length === 0;
    models.forEach(function (m, i) {
      var btn = el('button', { type: 'button', cls: 'secondary small', 'data-index': String(i), text: 'Try' });
      btn.setAttribute('aria-label', 'Try ' + m.name);
      btn.addEventListener('click', function () {
        $('model').value = String(i);
        clearError();
        onModelChange();
        $('infer-h').scrollIntoView({ behavior: 'smooth', block: 'start' });
        var first = $('inputs').querySelector('textarea');
        if (first) first.focus({ preventScroll: true });
      });
      body.appendChild(el('tr', null, [
        el('th', { scope: 'row' }, [el('code', { text: m.name })]),
        el('td', { 'data-label': 'Versions', text: sortedVersions(m).join(', ') }),
        el('td', { 'data-label': 'Platform', text: m.platform || '' }),
        el('td', { 'data-label': 'Inputs' }, [tensorList(m.inputs)]),
        el('td', { 'data-label': 'Outputs' }, [tensorList(m.outputs)]),
        el('td', null, [btn])
      ]));
    });
  }

  // ---- form
  function exampleShape(shape) { return (shape || []).map(function (d) { return d < 0 ? 1 : d; }); }

  function count(shape) { return shape.reduce(function (a, b) { return a * b; }, 1); }

  function zero(datatype) { return datatype === 'BOOL' ? false : datatype === 'BYTES' ? '' : 0; }

  function exampleData(shape, datatype) {
    var z = zero(datatype);
    if (count(shape) > MAX_PREFILL) return null;
    if (shape.length === 0) return [z];
    var build = function (d) {
      var a = [];
      for (var i = 0; i < shape[d]; i++) a.push(d === shape.length - 1 ? z : build(d + 1));
      return a;
    };
    return build(0);
  }

  // Innermost arrays on one line, outer levels one item per line.
  function pretty(v, indent) {
    indent = indent || '';
    if (!Array.isArray(v)) return JSON.stringify(v);
    if (!v.some(Array.isArray)) return '[' + v.map(function (x) { return JSON.stringify(x); }).join(', ') + ']';
    var inner = indent + '  ';
    return '[\n' + v.map(function (x) { return inner + pretty(x, inner); }).join(',\n') + '\n' + indent + ']';
  }

  function reshape(flat, shape) {
    if (shape.length < 2 || count(shape) !== flat.length) return flat;
    var pos = 0;
    var build = function (d) {
      var a = [];
      for (var i = 0; i < shape[d]; i++) a.push(d === shape.length - 1 ? flat[pos++] : build(d + 1));
      return a;
    };
    return build(0);
  }

  function fillExample(row) {
    var shape = exampleShape(row.spec.shape);
    var data = exampleData(shape, row.spec.datatype);
    row.shape.value = shapeText(shape);
    row.data.value = data === null ? '' : pretty(data);
    row.data.rows = Math.min(10, Math.max(2, row.data.value.split('\n').length));
    row.dirty = false;
  }

  function buildInputs(meta) {
    current = meta;
    var box = $('inputs');
    clear(box);
    (meta.inputs || []).forEach(function (spec, i) {
      var id = 'in-' + i;
      var shape = el('input', { type: 'text', id: id + '-shape', cls: 'shape-in', spellcheck: 'false', autocomplete: 'off' });
      var data = el('textarea', { id: id + '-data', spellcheck: 'false', autocomplete: 'off' });
      var row = { spec: spec, shape: shape, data: data, dirty: false };
      data.addEventListener('input', function () { row.dirty = true; });
      shape.addEventListener('change', function () {
        if (row.dirty) return;
        var s = parseShape(shape.value);
        if (s) {
          var d = exampleData(s, spec.datatype);
          if (d !== null) data.value = pretty(d);
        }
      });
      fillExample(row);
      box.appendChild(el('fieldset', { cls: 'input' }, [
        el('legend', null, [el('code', { text: String(spec.name) }), ' ',
          el('span', { cls: 'dt', text: String(spec.datatype) }), ' ',
          el('span', { cls: 'shape', text: shapeText(spec.shape) })]),
        el('label', { cls: 'small-label' }, ['Shape ', shape]),
        el('label', { 'for': id + '-data', cls: 'small-label', text: 'Data' }),
        data
      ]));
      box.lastChild.row = row;
    });
    if (!(meta.inputs || []).length) box.appendChild(el('p', { text: 'This model declares no inputs.' }));
  }

  function rows() {
    return Array.prototype.map.call($('inputs').querySelectorAll('fieldset.input'), function (f) { return f.row; });
  }

  function selected() {
    var m = models[Number($('model').value)];
    return m ? { model: m, version: $('version').value } : null;
  }

  function path(sel) {
    return '/v2/models/' + encodeURIComponent(sel.model.name) + '/versions/' + encodeURIComponent(sel.version);
  }

  function onModelChange() {
    var sel = selected();
    var vs = $('version');
    clear(vs);
    if (!sel) return;
    var versions = sortedVersions(sel.model);
    versions.forEach(function (v) { vs.appendChild(el('option', { value: v, text: v })); });
    if (versions.length) vs.value = versions[versions.length - 1];
    buildInputs(sel.model);
    onVersionChange();
  }

  // The embedded metadata is the default version's; fetch the selected version's in case its signature differs.
  function onVersionChange() {
    var sel = selected();
    if (!sel) return;
    $('endpoint').textContent = 'POST ' + path(sel) + '/infer';
    if (!sel.version) return;
    var key = sel.model.name + '/' + sel.version;
    var apply = function (meta) {
      var now = selected();
      if (!now || now.model !== sel.model || now.version !== sel.version) return;
      if (JSON.stringify(meta.inputs) !== JSON.stringify(current && current.inputs)) buildInputs(meta);
      else current = meta;
    };
    if (metaCache[key]) { apply(metaCache[key]); return; }
    fetch(path(sel), { headers: page.headers({ Accept: 'application/json' }) })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (meta) {
        if (meta && Array.isArray(meta.inputs)) { metaCache[key] = meta; apply(meta); }
      })
      .catch(function () { /* keep the embedded metadata */ });
  }

  function parseShape(text) {
    var t = text.trim();
    var arr;
    if (t.charAt(0) === '[') {
      try { arr = JSON.parse(t); } catch (e) { return null; }
    } else {
      arr = t === '' ? [] : t.split(/[\s,]+/).filter(Boolean).map(Number);
    }
    if (!Array.isArray(arr)) return null;
    for (var i = 0; i < arr.length; i++) {
      if (typeof arr[i] !== 'number' || !Number.isInteger(arr[i]) || arr[i] < 0) return null;
    }
    return arr;
  }

  // ---- inference
  function onSubmit(ev) {
    ev.preventDefault();
    if (busy) return;
    clearError();
    var sel = selected();
    if (!sel) return;
    var inputs = [];
    var list = rows();
    for (var i = 0; i < list.length; i++) {
      var r = list[i];
      var shape = parseShape(r.shape.value);
      if (!shape) {
        showError("Input '" + r.spec.name + "': the shape must be a list of non-negative integers, e.g. [1, 4].");
        r.shape.focus();
        return;
      }
      var data;
      try { data = JSON.parse(r.data.value); } catch (e) {
        showError("Input '" + r.spec.name + "': the data is not valid JSON (" + e.message + ').');
        r.data.focus();
        return;
      }
      inputs.push({ name: r.spec.name, shape: shape, datatype: r.spec.datatype, data: data });
    }
    run(sel, { inputs: inputs });
  }

  function setBusy(b) {
    busy = b;
    var btn = $('run');
    btn.disabled = b;
    btn.textContent = b ? 'Running…' : 'Run';
    $('infer-form').setAttribute('aria-busy', b ? 'true' : 'false');
  }

  function run(sel, body) {
    setBusy(true);
    $('result').hidden = true;
    var t0 = performance.now();
    var resp;
    fetch(path(sel) + '/infer', {
      method: 'POST',
      headers: page.headers({ 'Content-Type': 'application/json', Accept: 'application/json' }),
      body: JSON.stringify(body)
    })
      .then(function (r) { resp = r; return r.text(); })
      .then(function (text) {
        var rtt = performance.now() - t0;
        var json = null;
        try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
        if (!resp.ok) {
          var msg = json && typeof json.error === 'string' ? json.error : text.slice(0, 500) || resp.statusText;
          var retry = resp.headers.get('retry-after');
          showError('HTTP ' + resp.status + (resp.statusText ? ' ' + resp.statusText : '') + ': ' + msg +
            (retry ? ' (retry after ' + retry + ' s)' : ''));
          return;
        }
        if (!json || !Array.isArray(json.outputs)) {
          showError('The server answered ' + resp.status + ' but not with an inference response.');
          return;
        }
        showResult(json, resp.headers, rtt);
        page.refreshLog();
      })
      .catch(function (e) { showError('Request failed: ' + e.message); })
      .then(function () { setBusy(false); });
  }

  function us(v) { return v == null ? '—' : (Number(v) / 1000).toFixed(3) + ' ms'; }

  function showResult(json, headers, rtt) {
    var dl = $('timing');
    clear(dl);
    var add = function (k, v) { dl.appendChild(el('div', null, [el('dt', { text: k }), el('dd', { text: v })])); };
    add('Model', String(json.model_name || '') + (json.model_version ? ' v' + json.model_version : ''));
    add('Queue', us(headers.get('x-queue-time-us')));
    add('Inference', us(headers.get('x-inference-time-us')));
    var bs = headers.get('x-batch-size');
    add('Batch size', bs == null ? '—' : bs);
    add('Round trip', rtt.toFixed(1) + ' ms');
    if (json.id) add('Request id', String(json.id));

    var box = $('outputs');
    clear(box);
    json.outputs.forEach(function (o) {
      var shape = Array.isArray(o.shape) ? o.shape : [];
      var data = Array.isArray(o.data) ? o.data : [];
      var n = data.length;
      var text;
      if (n > MAX_SHOWN) {
        text = pretty(data.slice(0, MAX_SHOWN)) + '\n… truncated: showing ' + MAX_SHOWN + ' of ' + n + ' elements';
      } else if (o.data === undefined) {
        text = '(no JSON data: binary output or omitted)';
      } else {
        text = pretty(Array.isArray(o.data) ? reshape(data, shape) : o.data);
      }
      box.appendChild(el('div', { cls: 'output' }, [
        el('h4', null, [el('code', { text: String(o.name) }), ' ',
          el('span', { cls: 'dt', text: String(o.datatype) }), ' ',
          el('span', { cls: 'shape', text: shapeText(shape) })]),
        el('pre', { text: text })
      ]));
    });
    $('result').hidden = false;
  }

  // ---- start
  function start() {
    loadModels();
    renderTable();
    var ms = $('model');
    models.forEach(function (m, i) { ms.appendChild(el('option', { value: String(i), text: m.name })); });
    ms.addEventListener('change', function () { clearError(); onModelChange(); });
    $('version').addEventListener('change', function () { clearError(); onVersionChange(); });
    $('infer-form').addEventListener('submit', onSubmit);
    $('reset').addEventListener('click', function () { rows().forEach(fillExample); clearError(); });
    if (models.length) onModelChange();
    loadServer();
    // What a missing key refused (the server's metadata, a model's) is asked for again with the new one.
    page.onKey(function () { metaCache = {}; loadServer(); if (models.length) onVersionChange(); });
    checkReady();
    setInterval(function () { if (!document.hidden) checkReady(); }, 10000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
