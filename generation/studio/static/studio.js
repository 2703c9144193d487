// Stem studio: ask for a set, watch it being made, hear the stems together.
//
// No build step, no library: the Web Audio API plays every file of a set from one
// AudioContext clock, a canvas per lane draws its waveform on the set's bar/beat grid.
// Every text that comes from the service (stem names, warnings, errors, ids) goes into the
// page through textContent, never as HTML. The function key is kept in localStorage and
// sent as the x-functions-key header; the page never shows it.
'use strict';

(() => {
  const KEY_STORE = 'stemStudio.functionKey';
  const LAST_STORE = 'stemStudio.lastRequest';
  const RECENT_STORE = 'stemStudio.recent';
  const RECENT_MAX = 8;
  const TERMINAL = new Set(['completed', 'failed', 'terminated', 'canceled']);
  const POLL_MS = 1000;
  const POLL_SLOW_MS = 3000;
  const START_DELAY_S = 0.05; // scheduling headroom so every source starts on the same sample
  const PHASES = {
    analyzing: 'Analysing the uploaded track',
    generating: 'Generating stems',
    finalizing: 'Mixing and writing the manifest',
    notifying: 'Calling back',
    done: 'Done',
  };
  // Form layout: path, label, hint. Fields the API does not accept are left out; fields it
  // accepts that are not listed here are added under "More", so the form follows the API.
  const LAYOUT = [
    ['Timing', false, [
      ['parameters.target_bpm', 'Tempo (BPM)', 'Quarter notes per minute. Empty: the track\'s tempo, or none.'],
      ['parameters.bars', 'Bars', 'Length in bars (needs a tempo); overrides seconds.'],
      ['parameters.duration_seconds', 'Length (seconds)', 'With a tempo, rounded to whole bars.'],
      ['parameters.time_signature', 'Time signature', 'e.g. 4/4, 3/4, 6/8'],
      ['parameters.loop', 'Seamless loop', ''],
    ]],
    ['Sound', false, [
      ['parameters.engine', 'Engine', ''],
      ['parameters.key', 'Key', 'e.g. A minor'],
      ['parameters.chords', 'Chords', 'One chord per bar, separated by spaces.'],
      ['parameters.style', 'Style', 'e.g. funk, lofi, cinematic'],
      ['parameters.prompt', 'Prompt', 'Words added to every stem\'s prompt.'],
    ]],
    ['Output', false, [
      ['output_format', 'Format', 'wav: 16-bit PCM; wav_24, wav_float; flac: lossless 24-bit; mp3: lossy preview.'],
      ['seed', 'Seed', 'Same request and seed, same audio. Empty: random.'],
    ]],
    ['Advanced', true, [
      ['parameters.top_k', 'Top-k', ''],
      ['parameters.top_p', 'Top-p', ''],
      ['parameters.temperature', 'Temperature', ''],
      ['parameters.guidance_scale', 'Guidance scale', ''],
      ['generation_request_id', 'Request id', 'A new one is made for each request.'],
      ['callback_url', 'Callback URL', 'Optional: the result is POSTed there too.'],
    ]],
  ];
  const HANDLED = new Set(['target_stems', 'audio_file_id', 'parameters']);
  const DEFAULT_STEMS = ['guitar', 'bass', 'drums'];

  const $ = (id) => document.getElementById(id);
  const state = {
    config: null,
    schema: null,
    requestId: null,
    pollTimer: null,
    pollStarted: 0,
    audioFileId: null,
    loadedId: null,
    player: null,
  };

  // ---------------------------------------------------------------- small helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name === 'className') node.className = value;
      else if (name === 'dataset') Object.assign(node.dataset, value);
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child); // strings become text nodes
    }
    return node;
  }

  // Live regions re-announce a rewrite even of the same words: write only what changed.
  function setText(node, value) {
    const text = String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function store(name, value) {
    try {
      if (value === null) localStorage.removeItem(name);
      else localStorage.setItem(name, value);
    } catch (error) {
      // Private windows may refuse storage: the page still works, it just forgets.
    }
  }

  function recall(name) {
    try {
      return localStorage.getItem(name);
    } catch (error) {
      return null;
    }
  }

  function recallJson(name, fallback) {
    try {
      const value = JSON.parse(recall(name) || 'null');
      return value === null ? fallback : value;
    } catch (error) {
      return fallback;
    }
  }

  function api(path, options) {
    const opts = options || {};
    const headers = new Headers(opts.headers || {});
    const key = recall(KEY_STORE);
    if (key) headers.set('x-functions-key', key);
    return fetch(path, { ...opts, headers, cache: 'no-cache', credentials: 'same-origin' });
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (error) {
      return null;
    }
  }

  function keyProblem(status) {
    return status === 401 || status === 403
      ? 'The service refused the request: enter the app\'s function key above (the local Core Tools need none).'
      : null;
  }

  function filesPath(id, name) {
    return `generate/${encodeURIComponent(id)}/files/${encodeURIComponent(name)}`;
  }

  function fileName(entry) {
    const location = (entry && (entry.file || entry.blob_name)) || '';
    return location.split('/').pop();
  }

  function formatTime(seconds) {
    const s = Math.max(0, seconds);
    const minutes = Math.floor(s / 60);
    return `${minutes}:${(s - minutes * 60).toFixed(3).padStart(6, '0')}`;
  }

  function number(value, digits, unit) {
    return typeof value === 'number' && Number.isFinite(value) ? `${value.toFixed(digits)} ${unit}` : null;
  }

  function newRequestId() {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    const random = Array.from(crypto.getRandomValues(new Uint8Array(3)), (b) => b.toString(16).padStart(2, '0')).join('');
    return `studio-${stamp}-${random}`;
  }

  // ---------------------------------------------------------------- schema and form

  function deref(node) {
    let current = node || {};
    for (let i = 0; i < 8 && current.$ref; i += 1) {
      current = state.schema.$defs[current.$ref.split('/').pop()] || {};
    }
    if (current.allOf && current.allOf.length === 1) current = { ...deref(current.allOf[0]), ...current };
    return current;
  }

  function describe(node) {
    const direct = node || {};
    let info = deref(direct);
    let nullable = false;
    if (info.anyOf) {
      const parts = info.anyOf.map(deref);
      nullable = parts.some((part) => part.type === 'null');
      info = { ...(parts.find((part) => part.type !== 'null') || {}), default: info.default, description: info.description };
    }
    return { ...info, default: direct.default !== undefined ? direct.default : info.default, nullable };
  }

  function schemaFields() {
    const fields = new Map();
    const top = state.schema.properties || {};
    for (const [name, node] of Object.entries(top)) {
      if (!HANDLED.has(name)) fields.set(name, describe(node));
    }
    const params = deref(top.parameters).properties || {};
    for (const [name, node] of Object.entries(params)) fields.set(`parameters.${name}`, describe(node));
    return fields;
  }

  function fieldId(path) {
    return `f-${path.replace(/[^A-Za-z0-9_]/g, '-')}`;
  }

  function buildControl(path, info, label, hint) {
    const id = fieldId(path);
    const describedBy = [`${id}-hint`, `${id}-error`].join(' ');
    let input;
    let kind;
    if (info.enum) {
      kind = 'enum';
      input = el('select', { id, 'aria-describedby': describedBy });
      const shown = info.default !== undefined && info.default !== null ? `default (${info.default})` : 'default';
      input.append(el('option', { value: '', text: shown }));
      for (const value of info.enum) input.append(el('option', { value, text: value }));
    } else if (info.type === 'boolean') {
      kind = 'boolean';
      input = el('input', { id, type: 'checkbox', 'aria-describedby': describedBy });
    } else if (info.type === 'number' || info.type === 'integer') {
      kind = info.type;
      input = el('input', {
        id,
        type: 'number',
        inputmode: info.type === 'integer' ? 'numeric' : 'decimal',
        step: info.type === 'integer' ? '1' : 'any',
        min: info.minimum !== undefined ? info.minimum : info.exclusiveMinimum,
        max: info.maximum,
        placeholder: info.default !== undefined && info.default !== null ? String(info.default) : null,
        'aria-describedby': describedBy,
      });
    } else if (info.type === 'array') {
      kind = 'list';
      input = el('input', { id, type: 'text', 'aria-describedby': describedBy, autocomplete: 'off' });
    } else {
      kind = 'string';
      const long = (info.maxLength || 0) > 300;
      input = el(long ? 'textarea' : 'input', {
        id,
        type: long ? null : 'text',
        maxlength: info.maxLength,
        placeholder: info.default ? String(info.default) : null,
        autocomplete: 'off',
        'aria-describedby': describedBy,
      });
    }
    input.dataset.path = path;
    input.dataset.kind = kind;
    const check = kind === 'boolean';
    const labelNode = el('label', { for: id, text: label });
    return el('div', { className: check ? 'field check' : 'field', dataset: { field: path } },
      check ? input : labelNode,
      check ? labelNode : input,
      el('p', { className: 'hint', id: `${id}-hint`, text: hint || (info.description || '').replace(/``/g, '') }),
      el('p', { className: 'field-error', id: `${id}-error`, 'aria-live': 'polite' }));
  }

  function buildForm() {
    const fields = schemaFields();
    const container = $('fields');
    container.textContent = '';
    const placed = new Set();
    const groups = LAYOUT.map(([title, collapsed, items]) => [title, collapsed, items.map((item) => item.slice())]);
    const more = [];
    for (const path of fields.keys()) {
      if (!groups.some(([, , items]) => items.some(([listed]) => listed === path))) {
        more.push([path, path.replace('parameters.', '').replace(/_/g, ' '), '']);
      }
    }
    if (more.length) groups.splice(groups.length - 1, 0, ['More', false, more]);
    for (const [title, collapsed, items] of groups) {
      const controls = [];
      for (const [path, label, hint] of items) {
        const info = fields.get(path);
        if (!info || placed.has(path)) continue;
        // An engine choice only matters where the service offers more than one.
        if (path === 'parameters.engine' && (!info.enum || info.enum.length < 2)) continue;
        placed.add(path);
        controls.push(buildControl(path, info, label, hint));
      }
      if (!controls.length) continue;
      if (collapsed) {
        container.append(el('details', { className: 'group' }, el('summary', { text: title }), ...controls));
      } else {
        container.append(el('fieldset', {}, el('legend', { text: title }), ...controls));
      }
    }
    const stems = describe(state.schema.properties.target_stems);
    const choices = $('stem-choices');
    choices.textContent = '';
    for (const stem of (deref(stems.items).enum || [])) {
      const id = `stem-${stem}`;
      choices.append(el('span', { className: 'choice' },
        el('input', {
          id, type: 'checkbox', value: stem, dataset: { path: 'target_stems', kind: 'member' },
          'aria-describedby': 'f-target_stems-error',
        }),
        el('label', { for: id, text: stem })));
    }
  }

  function controls() {
    return Array.from($('ask-form').querySelectorAll('[data-path]'));
  }

  function valueOf(input) {
    const kind = input.dataset.kind;
    if (kind === 'boolean') return input.checked ? true : undefined;
    const raw = input.value.trim();
    if (raw === '') return undefined;
    if (kind === 'number' || kind === 'integer') {
      const parsed = Number(raw);
      return Number.isFinite(parsed) ? parsed : raw;
    }
    if (kind === 'list') return raw.split(/[\s,]+/).filter(Boolean);
    return raw;
  }

  function setPath(target, path, value) {
    const parts = path.split('.');
    let node = target;
    for (const part of parts.slice(0, -1)) {
      node[part] = node[part] || {};
      node = node[part];
    }
    node[parts[parts.length - 1]] = value;
  }

  function getPath(source, path) {
    return path.split('.').reduce((node, part) => (node && typeof node === 'object' ? node[part] : undefined), source);
  }

  function buildBody() {
    const body = { target_stems: [], parameters: {} };
    for (const input of controls()) {
      if (input.dataset.kind === 'member') {
        if (input.checked) body.target_stems.push(input.value);
        continue;
      }
      const value = valueOf(input);
      if (value !== undefined) setPath(body, input.dataset.path, value);
    }
    if (state.audioFileId) body.audio_file_id = state.audioFileId;
    return body;
  }

  function fillForm(body) {
    for (const input of controls()) {
      const value = getPath(body, input.dataset.path);
      if (input.dataset.kind === 'member') input.checked = Array.isArray(value) && value.includes(input.value);
      else if (input.dataset.kind === 'boolean') input.checked = value === true;
      else if (Array.isArray(value)) input.value = value.join(' ');
      else input.value = value === undefined || value === null ? '' : String(value);
    }
    const idInput = $(fieldId('generation_request_id'));
    if (idInput) idInput.value = newRequestId();
    setUpload(body.audio_file_id || null, body.audio_file_id ? 'Following the track uploaded before.' : '');
  }

  function clearErrors() {
    for (const node of document.querySelectorAll('.field-error')) node.textContent = '';
    for (const node of document.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
    $('form-errors').textContent = '';
  }

  function errorSlot(field) {
    const parts = String(field || 'body').split('.');
    while (parts.length) {
      const path = parts.join('.');
      const wrapper = Array.from(document.querySelectorAll('[data-field]')).find((node) => node.dataset.field === path);
      if (wrapper) return wrapper;
      parts.pop();
    }
    return null;
  }

  function showErrors(errors) {
    let first = null;
    for (const error of errors) {
      const wrapper = errorSlot(error.field);
      const message = String(error.message || 'invalid');
      if (!wrapper) {
        $('form-errors').append(el('p', { text: error.field && error.field !== 'body' ? `${error.field}: ${message}` : message }));
        continue;
      }
      const slot = wrapper.querySelector('.field-error');
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
      const input = wrapper.querySelector('[data-path], input[type="file"]');
      if (input) input.setAttribute('aria-invalid', 'true');
      first = first || input;
    }
    if (first) first.focus();
  }

  function formError(message) {
    $('form-state').textContent = '';
    $('form-errors').textContent = '';
    $('form-errors').append(el('p', { text: message }));
  }

  // ---------------------------------------------------------------- upload

  function setUpload(id, message) {
    state.audioFileId = id;
    $('track-state').textContent = message;
    $('track-clear').hidden = !id;
  }

  async function uploadTrack() {
    const file = $('track').files[0];
    const slot = $('f-audio_file_id-error');
    slot.textContent = '';
    $('track').removeAttribute('aria-invalid');
    if (!file) return;
    const limit = state.config.max_upload_mb;
    if (limit && file.size > limit * 1024 * 1024) {
      slot.textContent = `The file is larger than the service takes (${limit} MB).`;
      $('track').setAttribute('aria-invalid', 'true');
      return;
    }
    setUpload(null, `Uploading ${file.name}…`);
    let response;
    try {
      response = await api('uploads', {
        method: 'POST',
        headers: { 'Content-Type': file.type || 'application/octet-stream' },
        body: file,
      });
    } catch (error) {
      setUpload(null, '');
      slot.textContent = `Could not reach the service: ${error.message}`;
      return;
    }
    const data = await readJson(response);
    if (response.status === 201 && data) {
      setUpload(data.audio_file_id,
        `Uploaded as ${data.audio_file_id}: ${Number(data.duration_seconds).toFixed(1)} s, ${data.sample_rate} Hz, ${data.format}.`);
      return;
    }
    setUpload(null, '');
    const reasons = data && data.errors ? data.errors.map((e) => e.message) : [data && data.error];
    slot.textContent = keyProblem(response.status) || reasons.filter(Boolean).join(' ') || `The service answered ${response.status}.`;
    $('track').setAttribute('aria-invalid', 'true');
  }

  // ---------------------------------------------------------------- ask

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    const body = buildBody();
    const button = $('submit');
    button.disabled = true;
    $('form-state').textContent = 'Sending…';
    try {
      let response;
      try {
        response = await api('generate', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
      } catch (error) {
        formError(`Could not reach the service: ${error.message}`);
        return;
      }
      const data = await readJson(response);
      if (response.status === 400 && data && Array.isArray(data.errors)) {
        showErrors(data.errors);
        $('form-state').textContent = 'The service did not accept the request; see the fields marked.';
        return;
      }
      const problem = keyProblem(response.status);
      if (problem || !response.ok) {
        formError(problem || (data && data.error) || `The service answered ${response.status}.`);
        return;
      }
      $('form-state').textContent = data && data.duplicate ? 'This request was already made: showing it.' : 'Started.';
      store(LAST_STORE, JSON.stringify(body));
      remember(body.generation_request_id);
      const idInput = $(fieldId('generation_request_id'));
      if (idInput) idInput.value = newRequestId();
      openRequest(body.generation_request_id, true);
      // Take the eye (and the keyboard) to the request just made.
      $('watch-title').focus();
      $('watch').scrollIntoView({ block: 'start' });
    } finally {
      button.disabled = false;
    }
  }

  function remember(id) {
    const recent = recallJson(RECENT_STORE, []).filter((item) => item !== id);
    recent.unshift(id);
    store(RECENT_STORE, JSON.stringify(recent.slice(0, RECENT_MAX)));
    showRecent();
  }

  function showRecent() {
    const recent = recallJson(RECENT_STORE, []).filter((id) => typeof id === 'string');
    const list = $('recent');
    list.textContent = '';
    for (const id of recent) {
      const href = `?${new URLSearchParams({ id })}`;
      list.append(el('li', {}, el('a', { href, text: id })));
    }
    $('recent-box').hidden = recent.length === 0;
  }

  // ---------------------------------------------------------------- watch

  function openRequest(id, push) {
    stopPolling();
    if (state.player && state.loadedId !== id) closePlayer();
    state.requestId = id;
    if (push) history.pushState({ id }, '', `?${new URLSearchParams({ id })}`);
    viewing(true);
    $('request-id').textContent = id;
    $('phase').textContent = 'Asking the service…';
    $('stem-states').textContent = '';
    $('run-error').textContent = '';
    $('upload-facts').hidden = true;
    $('warnings-box').hidden = true;
    state.pollStarted = Date.now();
    poll();
  }

  function stopPolling() {
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  function schedule(ms) {
    stopPolling();
    state.pollTimer = setTimeout(poll, ms);
  }

  async function poll() {
    const id = state.requestId;
    if (!id) return;
    const slow = Date.now() - state.pollStarted > 60000;
    let response;
    try {
      response = await api(`generate/${encodeURIComponent(id)}`);
    } catch (error) {
      setText($('phase'), 'The service does not answer; trying again…');
      schedule(POLL_SLOW_MS);
      return;
    }
    if (id !== state.requestId) return;
    const data = await readJson(response);
    const problem = keyProblem(response.status);
    if (problem) {
      setText($('phase'), problem);
      return;
    }
    if (response.status === 404) {
      setText($('phase'), 'The service knows no request with this id (yet).');
      schedule(POLL_SLOW_MS);
      return;
    }
    if (!response.ok || !data) {
      setText($('phase'), (data && data.error) || `The service answered ${response.status}; trying again…`);
      schedule(POLL_SLOW_MS);
      return;
    }
    renderStatus(data);
    if (TERMINAL.has(data.status)) {
      if (data.progress && data.progress.phase === 'done') loadSet(id);
      return;
    }
    schedule(slow ? POLL_SLOW_MS : POLL_MS);
  }

  function renderStatus(data) {
    const progress = data.progress || {};
    const phase = PHASES[progress.phase] || (data.status === 'pending' ? 'Waiting to start' : 'Working');
    const counts = typeof progress.total === 'number'
      ? ` (${progress.completed || 0} of ${progress.total} stems done${progress.failed ? `, ${progress.failed} failed` : ''})`
      : '';
    setText($('phase'), `${data.status}: ${phase}${counts}`);
    $('phase').dataset.status = data.status;

    const reasons = new Map((data.failed_stems || []).map((f) => [String(f.stem), String(f.error || '')]));
    // Items are updated in place, so focus and screen readers are not disturbed by a poll.
    const list = $('stem-states');
    const items = new Map(Array.from(list.children, (item) => [item.dataset.stem, item]));
    const stems = Object.entries(progress.stems || {});
    for (const [stem, item] of items) {
      if (!stems.some(([name]) => name === stem)) item.remove();
    }
    for (const [stem, stemState] of stems) {
      let item = items.get(stem);
      if (!item) {
        item = el('li', { dataset: { stem } },
          el('span', { className: 'stem', text: stem }),
          el('span', { className: 'state' }),
          el('span', { className: 'reason' }));
        list.append(item);
      }
      item.dataset.state = String(stemState);
      setText(item.querySelector('.state'), stemState);
      setText(item.querySelector('.reason'), reasons.get(stem) || '');
    }

    const upload = data.musical && data.musical.upload;
    const facts = $('upload-facts');
    facts.textContent = '';
    if (upload) {
      const rows = [
        ['Track tempo', upload.bpm ? `${upload.bpm} BPM` : 'not detected'],
        ['Track key', upload.key || 'not detected'],
        ['First downbeat', typeof upload.first_downbeat_s === 'number' ? `${upload.first_downbeat_s.toFixed(3)} s` : 'not detected'],
      ];
      for (const [term, value] of rows) facts.append(el('dt', { text: term }), el('dd', { text: value }));
    }
    facts.hidden = !upload;

    const warnings = data.warnings || [];
    const warningList = $('warnings');
    warningList.textContent = '';
    for (const warning of warnings) warningList.append(el('li', { text: String(warning) }));
    $('warnings-box').hidden = warnings.length === 0;
    setText($('run-error'), data.error ? String(data.error) : '');
  }

  // ---------------------------------------------------------------- hear

  function gridOf(musical) {
    if (!musical || !musical.tempo_locked || !musical.target_bpm) return null;
    const [beats, unit] = String(musical.time_signature || '4/4').split('/').map(Number);
    if (!beats || !unit) return null;
    const beat = (4 / unit) * 60 / musical.target_bpm;
    return { beat, bar: beats * beat, beats, first: musical.first_downbeat_s || 0 };
  }

  function gridLines(grid, duration) {
    const lines = [];
    if (!grid) return lines;
    const start = grid.first - Math.ceil(grid.first / grid.bar) * grid.bar;
    const count = Math.ceil((duration - start) / grid.beat) + 1;
    for (let i = 0; i <= count; i += 1) {
      const t = start + i * grid.beat;
      if (t < -1e-9 || t > duration + 1e-9) continue;
      const inBar = Math.round((t - grid.first) / grid.beat);
      const beatIndex = ((inBar % grid.beats) + grid.beats) % grid.beats;
      lines.push({ t, bar: beatIndex === 0, number: Math.floor((t - grid.first) / grid.bar + 1e-6) + 1 });
    }
    return lines;
  }

  function cssColor(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
  }

  function canvasSize(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    return [width, height, ratio];
  }

  function drawRuler(player) {
    const canvas = $('ruler');
    const [width, height, ratio] = canvasSize(canvas);
    const g = canvas.getContext('2d');
    g.clearRect(0, 0, width, height);
    g.fillStyle = cssColor('--muted');
    g.strokeStyle = cssColor('--grid-bar');
    g.font = `${11 * ratio}px system-ui, sans-serif`;
    g.textBaseline = 'top';
    const lines = gridLines(player.grid, player.duration);
    if (lines.length) {
      const bars = lines.filter((line) => line.bar);
      const every = Math.max(1, Math.ceil(bars.length / Math.max(1, width / (40 * ratio))));
      for (const line of bars) {
        const x = Math.round((line.t / player.duration) * (width - 1));
        g.fillRect(x, height * 0.55, Math.max(1, ratio), height * 0.45);
        if ((line.number - 1) % every === 0) g.fillText(String(line.number), x + 3 * ratio, 2 * ratio);
      }
    } else {
      const step = Math.max(1, Math.ceil(player.duration / 10));
      for (let t = 0; t <= player.duration; t += step) {
        const x = Math.round((t / player.duration) * (width - 1));
        g.fillRect(x, height * 0.55, Math.max(1, ratio), height * 0.45);
        g.fillText(`${t}s`, x + 3 * ratio, 2 * ratio);
      }
    }
  }

  function drawLane(player, track) {
    const canvas = track.canvas;
    const [width, height, ratio] = canvasSize(canvas);
    const g = canvas.getContext('2d');
    g.fillStyle = cssColor('--lane-bg');
    g.fillRect(0, 0, width, height);
    for (const line of gridLines(player.grid, player.duration)) {
      g.fillStyle = cssColor(line.bar ? '--grid-bar' : '--grid-beat');
      g.fillRect(Math.round((line.t / player.duration) * (width - 1)), 0, Math.max(1, ratio), height);
    }
    if (!track.buffer) return;
    const channels = [];
    for (let c = 0; c < track.buffer.numberOfChannels; c += 1) channels.push(track.buffer.getChannelData(c));
    const length = track.buffer.length;
    const rate = track.buffer.sampleRate;
    const mid = height / 2;
    g.fillStyle = cssColor(track.kind === 'mix' ? '--wave-mix' : '--wave');
    for (let x = 0; x < width; x += 1) {
      const from = Math.floor(((x / width) * player.duration) * rate);
      const to = Math.min(length, Math.floor((((x + 1) / width) * player.duration) * rate));
      if (from >= length) break;
      let low = 0;
      let high = 0;
      for (const data of channels) {
        for (let i = from; i < Math.max(to, from + 1); i += 1) {
          const v = data[i];
          if (v < low) low = v;
          if (v > high) high = v;
        }
      }
      const top = mid - high * mid;
      g.fillRect(x, top, 1, Math.max(1, (high - low) * mid));
    }
  }

  function drawAll() {
    const player = state.player;
    if (!player) return;
    drawRuler(player);
    for (const track of player.tracks) drawLane(player, track);
    updateHeads(position());
  }

  function audible(track) {
    const soloing = state.player.tracks.some((t) => t.solo);
    return soloing ? track.solo : !track.muted;
  }

  function applyGains() {
    const player = state.player;
    for (const track of player.tracks) {
      const on = audible(track);
      track.lane.dataset.audible = String(on);
      track.gain.gain.setTargetAtTime(on ? 1 : 0, player.ctx.currentTime, 0.005);
      track.muteButton.setAttribute('aria-pressed', String(track.muted));
      track.soloButton.setAttribute('aria-pressed', String(track.solo));
    }
  }

  function loopRegion() {
    const player = state.player;
    const grid = player.grid;
    let from = Number($('loop-from').value);
    let to = Number($('loop-to').value);
    if (grid) {
      from = grid.first + (Math.max(0, Number.isFinite(from) ? from : 1) - 1) * grid.bar;
      to = grid.first + Math.max(0, Number.isFinite(to) ? to : 1) * grid.bar;
    }
    from = Math.min(Math.max(0, from || 0), player.duration);
    to = Math.min(Math.max(0, to || player.duration), player.duration);
    if (to - from < 0.01) return [0, player.duration];
    return [from, to];
  }

  function position() {
    const player = state.player;
    if (!player) return 0;
    if (!player.playing) return player.offset;
    const elapsed = Math.max(0, player.ctx.currentTime - player.startedAt);
    let at = player.offset + elapsed;
    if (player.looping) {
      const [from, to] = player.loop;
      if (at >= to) at = from + ((at - from) % (to - from));
    }
    return at;
  }

  function startSources(offset) {
    const player = state.player;
    const when = player.ctx.currentTime + START_DELAY_S;
    player.looping = $('loop-on').checked;
    player.loop = loopRegion();
    let from = offset;
    if (player.looping && (from < player.loop[0] || from >= player.loop[1])) from = player.loop[0];
    if (!player.looping && from >= player.duration) from = 0;
    player.sources = [];
    for (const track of player.tracks) {
      if (!track.buffer) continue;
      const source = player.ctx.createBufferSource();
      source.buffer = track.buffer;
      if (player.looping) {
        source.loop = true;
        source.loopStart = player.loop[0];
        source.loopEnd = player.loop[1];
      }
      source.connect(track.gain);
      // One start time on one clock for every source: they stay sample-aligned.
      source.start(when, from);
      player.sources.push(source);
    }
    player.startedAt = when;
    player.offset = from;
    player.playing = true;
  }

  function stopSources() {
    const player = state.player;
    for (const source of player.sources) {
      try {
        source.stop();
      } catch (error) {
        // A source that never started cannot be stopped: nothing to do.
      }
      source.disconnect();
    }
    player.sources = [];
  }

  async function play() {
    const player = state.player;
    if (!player || player.playing) return;
    await player.ctx.resume();
    startSources(player.offset);
    transportState();
    tick();
  }

  function pause() {
    const player = state.player;
    if (!player || !player.playing) return;
    const at = position();
    stopSources();
    player.playing = false;
    player.offset = at;
    transportState();
    updateHeads(at);
  }

  function seek(seconds) {
    const player = state.player;
    if (!player) return;
    const at = Math.min(Math.max(0, seconds), player.duration);
    if (player.playing) {
      stopSources();
      startSources(at);
    } else {
      player.offset = at;
      updateHeads(at);
    }
  }

  function transportState() {
    const playing = Boolean(state.player && state.player.playing);
    const button = $('play');
    button.textContent = playing ? 'Pause' : 'Play';
    button.setAttribute('aria-pressed', String(playing));
    $('transport').dataset.state = playing ? 'playing' : 'stopped';
  }

  function clockText(at) {
    const grid = state.player.grid;
    let text = `${formatTime(at)} / ${formatTime(state.player.duration)}`;
    if (grid) {
      const beats = Math.floor((at - grid.first) / grid.beat + 1e-6);
      const bar = Math.floor(beats / grid.beats) + 1;
      const beat = ((beats % grid.beats) + grid.beats) % grid.beats + 1;
      text = `bar ${bar}.${beat} · ${text}`;
    }
    return text;
  }

  function updateHeads(at) {
    const player = state.player;
    if (!player) return;
    for (const track of player.tracks) {
      const width = track.canvas.clientWidth;
      track.head.style.transform = `translateX(${(at / player.duration) * Math.max(0, width - 2)}px)`;
    }
    const slider = $('position');
    if (document.activeElement !== slider || !player.playing) slider.value = String(at);
    $('clock').textContent = clockText(at);
    $('transport').dataset.audioClock = player.ctx.currentTime.toFixed(3);
  }

  function tick() {
    const player = state.player;
    if (!player || !player.playing) {
      $('level').value = 0;
      return;
    }
    let at = position();
    if (!player.looping && at >= player.duration) {
      pause();
      player.offset = 0;
      at = 0;
    }
    updateHeads(at);
    const samples = player.levelData;
    player.analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const v of samples) peak = Math.max(peak, Math.abs(v));
    $('level').value = Math.min(1, peak);
    requestAnimationFrame(tick);
  }

  function closePlayer() {
    const player = state.player;
    if (!player) return;
    if (player.playing) stopSources();
    for (const track of player.tracks) if (track.url) URL.revokeObjectURL(track.url);
    if (player.manifestUrl) URL.revokeObjectURL(player.manifestUrl);
    player.ctx.close();
    state.player = null;
    state.loadedId = null;
    $('lanes').textContent = '';
    $('hear').hidden = true;
    transportState();
  }

  function buildLane(player, track) {
    const canvas = el('canvas', { 'aria-hidden': 'true', height: 72 });
    const head = el('div', { className: 'playhead' });
    track.canvas = canvas;
    track.head = head;
    track.muteButton = el('button', {
      type: 'button', className: 'mute', 'aria-pressed': 'false', text: 'Mute', 'aria-label': `Mute ${track.name}`,
      onclick: () => { track.muted = !track.muted; applyGains(); },
    });
    track.soloButton = el('button', {
      type: 'button', className: 'solo', 'aria-pressed': 'false', text: 'Solo', 'aria-label': `Solo ${track.name}`,
      onclick: () => { track.solo = !track.solo; applyGains(); },
    });
    const inKey = Number.isFinite(track.inKey) ? `${(100 * track.inKey).toFixed(0)}% in key` : null;
    const figures = [number(track.lufs, 1, 'LUFS'), number(track.peak, 1, 'dBTP'), inKey].filter(Boolean).join(' · ');
    track.link = el('a', {
      className: 'download', 'aria-disabled': 'true', text: `Download ${track.file}`, dataset: { file: track.file },
    });
    track.note = el('span', { className: 'lane-figures' });
    track.lane = el('div', { className: 'lane', dataset: { track: track.name, audible: 'true' } },
      el('div', { className: 'lane-head' },
        el('span', { className: 'lane-name', text: track.kind === 'mix' ? 'mix (preview)' : track.name }),
        track.muteButton, track.soloButton,
        el('span', { className: 'lane-figures', text: figures }),
        track.note,
        track.link),
      el('div', { className: 'wave' }, canvas, head));
    canvas.addEventListener('click', (event) => {
      const box = canvas.getBoundingClientRect();
      seek(((event.clientX - box.left) / box.width) * player.duration);
    });
    return track.lane;
  }

  async function fetchTrack(player, id, track) {
    const response = await api(filesPath(id, track.file));
    if (!response.ok) throw new Error(`${track.file}: the service answered ${response.status}`);
    const bytes = await response.arrayBuffer();
    // The download is exactly the bytes played: both come from this one response.
    const type = response.headers.get('Content-Type') || 'application/octet-stream';
    track.url = URL.createObjectURL(new Blob([bytes], { type }));
    track.link.href = track.url;
    track.link.download = track.file;
    track.link.removeAttribute('aria-disabled');
    track.buffer = await player.ctx.decodeAudioData(bytes.slice(0));
  }

  function newContext(sampleRate) {
    try {
      return new AudioContext({ sampleRate, latencyHint: 'playback' });
    } catch (error) {
      return new AudioContext({ latencyHint: 'playback' });
    }
  }

  async function loadSet(id) {
    if (state.loadedId === id) return;
    closePlayer();
    state.loadedId = id;
    $('hear').hidden = false;
    $('hear-state').textContent = 'Loading the set…';
    let manifest;
    let manifestBytes;
    try {
      const response = await api(filesPath(id, 'manifest.json'));
      if (!response.ok) {
        const data = await readJson(response);
        throw new Error((data && data.error) || `the service answered ${response.status}`);
      }
      manifestBytes = await response.arrayBuffer();
      manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
    } catch (error) {
      $('hear-state').textContent = `No manifest to play: ${error.message}`;
      state.loadedId = null;
      return;
    }
    if (state.requestId !== id) return;
    const stems = Array.isArray(manifest.stems) ? manifest.stems : [];
    const tracks = stems.map((s) => ({
      name: String(s.stem), file: fileName(s), kind: 'stem', lufs: s.loudness_lufs, peak: s.true_peak_dbtp,
      inKey: s.in_key, rate: s.sample_rate, muted: false, solo: false,
    }));
    if (manifest.mix && fileName(manifest.mix)) {
      tracks.push({
        name: 'mix', file: fileName(manifest.mix), kind: 'mix', lufs: manifest.mix.loudness_lufs,
        peak: manifest.mix.true_peak_dbtp, rate: manifest.mix.sample_rate, muted: tracks.length > 0, solo: false,
      });
    }
    const rate = (tracks.find((t) => t.rate) || {}).rate || 44100;
    const ctx = newContext(rate);
    const master = ctx.createGain();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    master.connect(analyser);
    analyser.connect(ctx.destination);
    const player = {
      ctx, master, analyser, levelData: new Float32Array(analyser.fftSize), tracks,
      grid: gridOf(manifest.musical), duration: 0, offset: 0, startedAt: 0, playing: false,
      looping: false, loop: [0, 0], sources: [], manifestUrl: null,
    };
    state.player = player;
    const lanes = $('lanes');
    lanes.textContent = '';
    for (const track of tracks) {
      track.gain = ctx.createGain();
      track.gain.connect(master);
      lanes.append(buildLane(player, track));
    }
    player.manifestUrl = URL.createObjectURL(new Blob([manifestBytes], { type: 'application/json' }));
    const manifestLink = $('manifest-link');
    manifestLink.href = player.manifestUrl;
    manifestLink.download = 'manifest.json';
    manifestLink.hidden = false;
    const results = await Promise.allSettled(tracks.map((track) => fetchTrack(player, id, track)));
    if (state.player !== player) return;
    const failures = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
    results.forEach((result, i) => {
      if (result.status === 'rejected') tracks[i].note.textContent = 'could not be loaded';
    });
    player.duration = Math.max(0.001, ...tracks.filter((t) => t.buffer).map((t) => t.buffer.duration));
    const musical = manifest.musical || {};
    const facts = [];
    if (player.grid) facts.push(`${musical.target_bpm} BPM (${musical.tempo_source || 'request'})`, `${musical.time_signature}`, `${musical.bars} bar${musical.bars === 1 ? '' : 's'}`);
    if (musical.key) facts.push(`key ${musical.key}`);
    if (musical.loop) facts.push('seamless loop');
    facts.push(`${formatTime(player.duration)} at ${ctx.sampleRate} Hz`);
    $('grid-facts').textContent = facts.join(' · ');
    $('hear-state').textContent = failures.length ? `Some files could not be played: ${failures.join('; ')}` : 'Ready.';
    setupTransport(player);
    applyGains();
    drawAll();
  }

  function setupTransport(player) {
    const grid = player.grid;
    const slider = $('position');
    slider.max = String(player.duration);
    slider.step = grid ? String(grid.beat) : '0.1';
    $('loop-from-label').textContent = grid ? 'from bar' : 'from second';
    $('loop-to-label').textContent = grid ? 'to bar' : 'to second';
    // Bar 0 is the pickup before the first downbeat, when there is one.
    const firstBar = grid && grid.first > 0.001 ? 0 : 1;
    const bars = grid ? Math.max(1, Math.ceil((player.duration - grid.first) / grid.bar - 1e-6)) : 0;
    for (const input of [$('loop-from'), $('loop-to')]) {
      input.min = grid ? String(firstBar) : '0';
      input.max = grid ? String(bars) : String(player.duration);
      input.step = grid ? '1' : '0.1';
    }
    $('loop-from').value = grid ? String(firstBar) : '0';
    $('loop-to').value = grid ? String(bars) : player.duration.toFixed(1);
    for (const id of ['play', 'to-start', 'loop-on', 'loop-from', 'loop-to', 'position']) $(id).disabled = false;
    transportState();
  }

  function loopChanged() {
    const player = state.player;
    if (player && player.playing) seek(position());
  }

  // ---------------------------------------------------------------- start

  function showKeyState() {
    $('key-state').textContent = recall(KEY_STORE) ? 'A key is saved in this browser.' : 'No key saved.';
  }

  function wire() {
    $('key-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('function-key');
      const key = input.value.trim();
      if (key) store(KEY_STORE, key);
      input.value = '';
      showKeyState();
      if (state.requestId && !state.pollTimer) poll();
    });
    $('forget-key').addEventListener('click', () => {
      store(KEY_STORE, null);
      showKeyState();
    });
    $('ask-form').addEventListener('submit', submit);
    $('track').addEventListener('change', uploadTrack);
    $('track-clear').addEventListener('click', () => {
      $('track').value = '';
      setUpload(null, '');
    });
    $('new-request').addEventListener('click', () => {
      stopPolling();
      closePlayer();
      state.requestId = null;
      viewing(false);
      history.pushState({}, '', location.pathname);
      const first = document.querySelector('#stem-choices input');
      if (first) first.focus();
    });
    $('play').addEventListener('click', () => (state.player && state.player.playing ? pause() : play()));
    $('to-start').addEventListener('click', () => seek(0));
    $('position').addEventListener('input', (event) => seek(Number(event.target.value)));
    $('loop-on').addEventListener('change', loopChanged);
    $('loop-from').addEventListener('change', loopChanged);
    $('loop-to').addEventListener('change', loopChanged);
    document.addEventListener('keydown', (event) => {
      const target = event.target;
      const typing = target.closest && target.closest('input, textarea, select, button, a, summary');
      if (event.key === ' ' && !typing && state.player) {
        event.preventDefault();
        if (state.player.playing) pause();
        else play();
      }
    });
    window.addEventListener('popstate', () => route());
    if (window.ResizeObserver) {
      let pending = false;
      new ResizeObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          drawAll();
        });
      }).observe($('lanes'));
    }
  }

  function route() {
    const id = state.config.read_only
      ? state.config.generation_request_id
      : new URLSearchParams(location.search).get('id');
    if (id) {
      if (id !== state.requestId) openRequest(id, false);
    } else {
      stopPolling();
      closePlayer();
      state.requestId = null;
      viewing(false);
    }
  }

  function viewing(open) {
    $('watch').hidden = !open;
    $('intro').hidden = open || state.config.read_only;
    document.querySelector('main').classList.toggle('viewing', open);
  }

  async function start() {
    let response;
    try {
      response = await fetch('studio/config.json', { cache: 'no-cache' });
      state.config = await response.json();
    } catch (error) {
      $('mode-note').textContent = `The studio could not load its configuration: ${error.message}`;
      return;
    }
    state.schema = state.config.request_schema;
    wire();
    if (state.config.read_only) {
      $('mode-note').textContent = 'A local folder, read-only: hear the set the CLI wrote.';
      document.querySelector('main').classList.add('single');
      $('new-request').hidden = true;
    } else {
      $('key-form').hidden = false;
      showKeyState();
      buildForm();
      const last = recallJson(LAST_STORE, null);
      fillForm(last || { target_stems: DEFAULT_STEMS });
      showRecent();
      $('ask').hidden = false;
    }
    route();
  }

  document.addEventListener('DOMContentLoaded', start);
})();
