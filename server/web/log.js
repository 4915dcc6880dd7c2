// kubeinfer web page: the API key the page sends with its requests, and the prediction log (the latest
// predictions, with their feedback, and a form to add feedback). Loaded before app.js, which builds its
// nodes with kubeinfer.el(), sends its requests with kubeinfer.headers() and calls
// kubeinfer.refreshLog() after each answer.
// Every piece of data goes into the DOM through textContent or attributes, never as HTML.
(function () {
  'use strict';

  var STORAGE = 'kubeinfer.apiKey';
  var PAGE = 20;
  var $ = function (id) { return document.getElementById(id); };
  var memoryKey = '';        // where the key lives when sessionStorage is unavailable
  var keyListeners = [];     // called when the key changes (app.js reloads what a missing key refused)

  function el(tag, props, children) {
    var e = document.createElement(tag);
    if (props) {
      for (var k in props) {
        if (k === 'text') e.textContent = props[k];
        else if (k === 'cls') e.className = props[k];
        else e.setAttribute(k, props[k]);
      }
    }
    (children || []).forEach(function (c) {
      if (c != null) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ---- the API key: kept for the tab's session only, sent as a Bearer token
  function apiKey() {
    try { return sessionStorage.getItem(STORAGE) || ''; } catch (e) { return memoryKey; }
  }

  function setKey(key) {
    memoryKey = key;
    try {
      if (key) sessionStorage.setItem(STORAGE, key); else sessionStorage.removeItem(STORAGE);
    } catch (e) { /* private mode: memoryKey holds it */ }
    $('key-state').textContent = key ? 'key set for this tab' : 'no key';
  }

  function headers(h) {
    var out = {};
    for (var k in (h || {})) out[k] = h[k];
    var key = apiKey();
    if (key) out.Authorization = 'Bearer ' + key;
    return out;
  }

  // What a refused request means here, in a sentence the user can act on.
  function refusal(status, body) {
    var said = body && typeof body.error === 'string' ? body.error : 'HTTP ' + status;
    var end = /[.!?]$/.test(said) ? ' ' : '. ';
    if (status === 401) return said + end + 'Enter an API key above.';
    if (status === 403) return said + end + 'Use a key with that scope.';
    return said;
  }

  function request(url, options) {
    return fetch(url, options).then(function (r) {
      return r.text().then(function (text) {
        var json = null;
        try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
        return { status: r.status, ok: r.ok, json: json };
      });
    });
  }

  // ---- the log
  function when(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function ms(us) { return us == null ? '—' : (Number(us) / 1000).toFixed(2) + ' ms'; }

  function predicted(p) {
    if (p.predicted_class == null) return '—';
    var score = p.predicted_score == null ? '' : ' (' + Number(p.predicted_score).toFixed(3) + ')';
    return 'class ' + p.predicted_class + score;
  }

  function feedbackText(list) {
    if (!list || !list.length) return 'none';
    var last = list[list.length - 1];
    var what = last.label != null ? 'label ' + last.label : last.score != null ? 'score ' + last.score : 'comment';
    return list.length + ' · ' + what;
  }

  function render(predictions) {
    var body = $('log-body');
    clear(body);
    $('log-empty').hidden = predictions.length > 0;
    $('log-table').hidden = predictions.length === 0;
    predictions.forEach(function (p) {
      var btn = el('button', { type: 'button', cls: 'secondary small', text: 'Feedback' });
      btn.setAttribute('aria-label', 'Feedback on prediction ' + p.id);
      btn.addEventListener('click', function () { openFeedback(p); });
      body.appendChild(el('tr', { 'data-id': String(p.id) }, [
        el('td', { 'data-label': 'Time', text: when(p.created_at) }),
        el('td', { 'data-label': 'Model' }, [el('code', { text: p.model + ' v' + p.model_version })]),
        el('td', { 'data-label': 'Outcome', cls: 'outcome', 'data-outcome': String(p.outcome), text: String(p.outcome) }),
        el('td', { 'data-label': 'Protocol', text: String(p.protocol) }),
        el('td', { 'data-label': 'Total', text: ms(p.total_us) }),
        el('td', { 'data-label': 'Predicted', text: predicted(p) }),
        el('td', { 'data-label': 'Feedback', cls: 'feedback', text: feedbackText(p.feedback) }),
        el('td', null, [btn])
      ]));
    });
  }

  function refreshLog() {
    var model = $('log-model').value;
    var url = '/api/predictions?limit=' + PAGE + '&include=feedback' + (model ? '&model=' + encodeURIComponent(model) : '');
    $('log-status').textContent = 'loading…';
    request(url, { headers: headers({ Accept: 'application/json' }), cache: 'no-store' })
      .then(function (r) {
        if (!r.ok) {
          $('log-status').textContent = refusal(r.status, r.json);
          render([]);
          $('log-empty').hidden = true;
          return;
        }
        var predictions = r.json && Array.isArray(r.json.predictions) ? r.json.predictions : [];
        $('log-status').textContent = predictions.length + ' latest' + (model ? ' of ' + model : '');
        render(predictions);
      })
      .catch(function (e) { $('log-status').textContent = 'The prediction log is unreachable: ' + e.message; });
  }

  // ---- feedback
  function openFeedback(p) {
    var form = $('feedback-form');
    form.setAttribute('data-id', String(p.id));
    $('feedback-for').textContent = p.model + ' v' + p.model_version + ', ' + when(p.created_at) + ' (' + p.id + ')';
    $('feedback-error').textContent = '';
    form.hidden = false;
    $('feedback-label').focus();
  }

  function submitFeedback(ev) {
    ev.preventDefault();
    var form = $('feedback-form');
    var id = form.getAttribute('data-id');
    var body = {};
    var label = $('feedback-label').value.trim();
    var score = $('feedback-score').value.trim();
    var comment = $('feedback-comment').value.trim();
    if (label) body.label = label;
    if (score) {
      body.score = Number(score);
      if (!isFinite(body.score)) { $('feedback-error').textContent = 'The score must be a number.'; return; }
    }
    if (comment) body.comment = comment;
    if (!label && !score && !comment) {
      $('feedback-error').textContent = 'Give a label, a score or a comment.';
      return;
    }
    request('/api/predictions/' + encodeURIComponent(id) + '/feedback', {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/json', Accept: 'application/json' }),
      body: JSON.stringify(body)
    })
      .then(function (r) {
        if (r.status !== 201) { $('feedback-error').textContent = refusal(r.status, r.json); return; }
        form.hidden = true;
        form.reset();
        refreshLog();
      })
      .catch(function (e) { $('feedback-error').textContent = 'Feedback failed: ' + e.message; });
  }

  // ---- start
  function start() {
    var names = [];
    try {
      var parsed = JSON.parse(($('models') || {}).textContent || '[]');
      if (Array.isArray(parsed)) parsed.forEach(function (m) { if (m && typeof m.name === 'string') names.push(m.name); });
    } catch (e) { /* app.js reports an unreadable list */ }
    var select = $('log-model');
    names.forEach(function (n) { select.appendChild(el('option', { value: n, text: n })); });
    select.addEventListener('change', refreshLog);
    $('log-refresh').addEventListener('click', refreshLog);
    $('feedback-form').addEventListener('submit', submitFeedback);
    $('feedback-cancel').addEventListener('click', function () { $('feedback-form').hidden = true; });
    $('key-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      setKey($('api-key').value.trim());
      $('api-key').value = '';
      keyListeners.forEach(function (f) { f(); });
      refreshLog();
    });
    $('key-forget').addEventListener('click', function () {
      setKey('');
      keyListeners.forEach(function (f) { f(); });
      refreshLog();
    });
    setKey(apiKey());
    refreshLog();
  }

  // The server writes the log in the background, a fraction of a second after answering: look again
  // once it has had the time.
  function afterInference() {
    refreshLog();
    setTimeout(refreshLog, 1000);
  }

  window.kubeinfer = {
    el: el,
    clear: clear,
    headers: headers,
    refreshLog: afterInference,
    onKey: function (f) { keyListeners.push(f); }
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
