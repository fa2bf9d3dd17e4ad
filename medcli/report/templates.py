"""Jinja2 templates of the reports (kept in Python so that packaging needs no data-file rule)."""

CSS = """
:root{--fg:#1a1a1a;--muted:#4a4a4a;--line:#d0d0d0;--bg:#fff;--accent:#1f4e8c;--warn:#8a1c1c}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;max-width:1100px;padding:1rem;line-height:1.45}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}h2{font-size:1.2rem;border-bottom:2px solid var(--line);padding-bottom:.2rem;margin-top:1.6rem}
a{color:var(--accent)}
h1,p,dd,figcaption,li{overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:.4rem 0;font-size:.92rem}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding:.2rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.wrap{overflow-x:auto}
figure{margin:.8rem 0}figure img{max-width:100%;height:auto;display:block;background:#111}
figcaption{font-size:.85rem;color:var(--muted)}
.narrative p{margin:.3rem 0}.narrative a{text-decoration:none;border-bottom:1px dotted var(--accent)}
.note{color:var(--muted);font-size:.85rem}
.flag{color:var(--warn);font-weight:600}
:target{background:#fff3b0}
code{font-size:.85em;word-break:break-all}
dl.id{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0}dl.id dt{color:var(--muted)}dl.id dd{margin:0}
@media (max-width:600px){body{padding:.5rem}th,td{padding:.25rem}dl.id{grid-template-columns:1fr}}
@media print{body{max-width:none;padding:0;font-size:10pt}a{color:inherit;border:0}figure,table,tr{break-inside:avoid}
h2{break-after:avoid}.noprint{display:none}}
"""

#: The start of every HTML page: nothing may be requested but inline images and styles (one self-contained file).
HTML_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
"""

REPORT_HTML = HTML_HEAD + """<title>medcli report: {{ doc.identity.source }}</title>
<style>{{ css|safe }}</style>
</head>
<body>
<header>
<h1>Report: {{ doc.identity.source }}</h1>
<p class="note">Made by {{ doc.generated_by }} from the files listed under <a href="#provenance">Provenance</a>.</p>
</header>
<main>
<section aria-labelledby="h-summary">
<h2 id="h-summary">Summary</h2>
<div class="narrative">
{% for s in doc.narrative %}<p><a href="#{{ s.ref }}">{{ s.text }}</a></p>
{% endfor %}
</div>
</section>

{% if doc.warnings %}
<section aria-labelledby="h-warn">
<h2 id="h-warn">Warnings</h2>
<ul>{% for w in doc.warnings %}<li class="flag">{{ w }}</li>{% endfor %}</ul>
</section>
{% endif %}

<section aria-labelledby="h-identity">
<h2 id="h-identity">Scan</h2>
<dl class="id">
{% for k, v in doc.identity.items() %}<dt>{{ k|replace('_', ' ') }}</dt><dd>{% if v is sequence and v is not string %}{{ v|join(' × ' if k in ('shape', 'voxel_size_mm', 'field_of_view_mm') else ', ') }}{% else %}<code>{{ v }}</code>{% endif %}</dd>
{% endfor %}
</dl>
</section>

{% if doc.volumes.labels or doc.volumes.intracranial_volume_ml %}
<section aria-labelledby="h-volumes">
<h2 id="h-volumes">Volumes</h2>
<div class="wrap"><table>
<caption>Volume per label in mL and as % of the intracranial volume (ICV{% if doc.volumes.icv_from %}: from {{ doc.volumes.icv_from }}{% endif %}).</caption>
<thead><tr><th scope="col">Structure</th><th scope="col" class="n">Volume (mL)</th><th scope="col" class="n">% ICV</th><th scope="col">From</th></tr></thead>
<tbody>
{% if doc.volumes.intracranial_volume_ml %}<tr id="icv"><th scope="row">Intracranial volume</th><td class="n">{{ doc.volumes.intracranial_volume_ml|num }}</td><td class="n">100</td><td>{{ doc.volumes.icv_from }}</td></tr>{% endif %}
{% for r in doc.volumes.labels %}<tr id="{{ r.id }}"><th scope="row">{{ r.name }}</th><td class="n">{{ r.volume_ml|num }}</td><td class="n">{{ r.percent_icv|num }}</td><td>{{ r.source }}</td></tr>
{% endfor %}
</tbody></table></div>
</section>
{% endif %}

{% if doc.findings is defined %}
<section aria-labelledby="h-findings" id="findings">
<h2 id="h-findings">Findings</h2>
{% if doc.findings %}
<div class="wrap"><table>
<caption>Focal findings from <code>medcli detect</code>: centre in RAS mm, equivalent diameter, detector score (not a probability of disease).{% if doc.side_from %} Side from {{ doc.side_from }}.{% endif %}</caption>
<thead><tr><th scope="col">#</th><th scope="col">Location</th><th scope="col" class="n">Centre R, A, S (mm)</th><th scope="col" class="n">Diameter (mm)</th><th scope="col" class="n">Volume (mL)</th><th scope="col" class="n">Score</th><th scope="col">Crop</th></tr></thead>
<tbody>
{% for f in doc.findings %}<tr id="{{ f.anchor }}"><th scope="row">{{ f.id }}</th><td>{{ f.where or f.label }}</td><td class="n">{{ f.center_ras_mm|map('num')|join(', ') }}</td><td class="n">{{ f.diameter_mm|num }}</td><td class="n">{{ f.volume_ml|num(3) }}</td><td class="n">{{ f.score|num(2) }}</td>
<td>{% if f.anchor in crops %}<img src="{{ crops[f.anchor].uri }}" alt="{{ crops[f.anchor].alt }}" width="{{ crops[f.anchor].width }}" height="{{ crops[f.anchor].height }}">{% endif %}</td></tr>
{% endfor %}
</tbody></table></div>
{% else %}<p>No focal finding was detected.</p>{% endif %}
</section>
{% endif %}

{% if doc.landmarks is defined %}
<section aria-labelledby="h-landmarks" id="landmarks">
<h2 id="h-landmarks">Landmarks</h2>
<div class="wrap"><table>
<caption>Landmarks in RAS mm, with the confidence the landmarks step gave each (0-1; – when unknown).</caption>
<thead><tr><th scope="col">Label</th><th scope="col">Description</th><th scope="col" class="n">R</th><th scope="col" class="n">A</th><th scope="col" class="n">S</th><th scope="col" class="n">Confidence</th><th scope="col">From</th></tr></thead>
<tbody>
{% for p in doc.landmarks %}<tr><th scope="row">{{ p.label }}</th><td>{{ p.description }}</td>{% for x in p.ras_mm %}<td class="n">{{ x|num }}</td>{% endfor %}<td class="n">{{ p.confidence|num(2) }}</td><td>{{ p.source }}</td></tr>
{% endfor %}
</tbody></table></div>
</section>
{% endif %}

{% if doc.registration is defined %}
<section aria-labelledby="h-reg">
<h2 id="h-reg">Registration</h2>
<div class="wrap"><table>
<caption>Registration QC from <code>register --stats</code>.</caption>
<thead><tr><th scope="col">Moving → fixed</th><th scope="col">Type</th><th scope="col">Metric</th><th scope="col" class="n">Before</th><th scope="col" class="n">After</th><th scope="col" class="n">Folded fraction</th></tr></thead>
<tbody>
{% for r in doc.registration %}<tr id="reg-{{ loop.index }}"><th scope="row">{{ r.moving }} → {{ r.fixed }}</th><td>{{ r.type }}</td><td>{{ r.metric }}</td><td class="n">{{ r.metric_before|num(4) }}</td><td class="n">{{ r.metric_after|num(4) }}</td><td class="n">{{ r.folded_fraction }}</td></tr>
{% endfor %}
</tbody></table></div>
</section>
{% endif %}

{% if figures %}
<section aria-labelledby="h-qc">
<h2 id="h-qc">Quality control pictures</h2>
{% for f in figures %}<figure><img src="{{ f.uri }}" alt="{{ f.alt }}" width="{{ f.width }}" height="{{ f.height }}"><figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}
</section>
{% endif %}

<section aria-labelledby="h-prov" id="provenance">
<h2 id="h-prov">Provenance</h2>
<div class="wrap"><table>
<caption>Every step that made an input of this report, with its model and the model's sha256.</caption>
<thead><tr><th scope="col">Step</th><th scope="col">Model</th><th scope="col">Model sha256</th><th scope="col">File</th></tr></thead>
<tbody>
{% for p in doc.provenance %}<tr><th scope="row">{{ p.step }}</th><td>{{ p.model or '–' }}</td><td><code>{{ p.sha256 or '–' }}</code></td><td>{{ p.source }}{% if p.command_line %}<br><code>{{ p.command_line }}</code>{% endif %}</td></tr>
{% endfor %}
</tbody></table></div>
</section>

<section aria-labelledby="h-about" id="about">
<h2 id="h-about">About these results</h2>
<p>medcli measures; it does not diagnose. The numbers above come from automatic methods for research use and need review by a qualified person.</p>
{% for m in doc.models %}<p><strong>{{ m.model }}</strong>{% if m.trained_on is defined %}: trained on {{ m.trained_on }} (<code>{{ m.card }}</code>){% else %}: no bundled model card{% endif %}.</p>
{% endfor %}
</section>
</main>
</body>
</html>
"""

REPORT_MD = """# Report: {{ doc.identity.source }}

Made by {{ doc.generated_by }}.

## Summary

{% for s in doc.narrative %}{{ s.text }} [{{ s.ref }}]
{% endfor %}

{% if doc.warnings %}
## Warnings

{% for w in doc.warnings %}- {{ w }}
{% endfor %}
{% endif %}
## Scan

| field | value |
|---|---|
{% for k, v in doc.identity.items() %}| {{ k }} | {% if v is sequence and v is not string %}{{ v|join(' x ') }}{% else %}{{ v }}{% endif %} |
{% endfor %}
{% if doc.volumes.labels %}

## Volumes

| structure | volume (mL) | % ICV | id |
|---|---:|---:|---|
{% if doc.volumes.intracranial_volume_ml %}| Intracranial volume | {{ doc.volumes.intracranial_volume_ml|num }} | 100 | icv |
{% endif %}
{% for r in doc.volumes.labels %}| {{ r.name }} | {{ r.volume_ml|num }} | {{ r.percent_icv|num }} | {{ r.id }} |
{% endfor %}
{% endif %}
{% if doc.findings is defined %}

## Findings

| # | location | centre RAS (mm) | diameter (mm) | score |
|---|---|---|---:|---:|
{% for f in doc.findings %}| {{ f.id }} | {{ f.where or f.label }} | {{ f.center_ras_mm|map('num')|join(', ') }} | {{ f.diameter_mm|num }} | {{ f.score|num(2) }} |
{% endfor %}
{% if doc.side_from %}

Side from {{ doc.side_from }}.
{% endif %}
{% endif %}
{% if doc.landmarks is defined %}

## Landmarks

| label | description | R | A | S | confidence |
|---|---|---:|---:|---:|---:|
{% for p in doc.landmarks %}| {{ p.label }} | {{ p.description }} | {{ p.ras_mm|map('num')|join(' | ') }} | {{ p.confidence|num(2) }} |
{% endfor %}
{% endif %}

## Provenance

| step | model | sha256 | file |
|---|---|---|---|
{% for p in doc.provenance %}| {{ p.step }} | {{ p.model or '' }} | {{ p.sha256 or '' }} | {{ p.source }} |
{% endfor %}

medcli measures; it does not diagnose.
{% for m in doc.models %}{% if m.trained_on is defined %}
- {{ m.model }}: trained on {{ m.trained_on }}
{% endif %}{% endfor %}
"""

COHORT_HTML = HTML_HEAD + """<title>medcli cohort report ({{ rows|length }} subjects)</title>
<style>{{ css|safe }} .plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:.8rem}.plots svg{width:100%;height:auto}</style>
</head>
<body>
<header><h1>Cohort report: {{ rows|length }} subjects</h1>
<p class="note">Made by {{ generated_by }}. Outliers: |robust z| &gt; {{ threshold }} (median and MAD × 1.4826).</p></header>
<main>
<section aria-labelledby="h-out" id="outliers">
<h2 id="h-out">Outliers</h2>
{% if outliers %}<ul>{% for o in outliers %}<li><a href="#s-{{ o.index }}">{{ o.subject }}</a>: {{ o.column }} {{ o.value|num }} (robust z {{ o.z|num(1) }})</li>{% endfor %}</ul>
{% else %}<p>No subject has a value with |robust z| &gt; {{ threshold }}.</p>{% endif %}
</section>
<section aria-labelledby="h-dist">
<h2 id="h-dist">Distributions</h2>
<div class="plots">{% for p in plots %}<figure>{{ p|safe }}</figure>{% endfor %}</div>
</section>
<section aria-labelledby="h-table">
<h2 id="h-table">Subjects</h2>
<div class="wrap"><table>
<caption>Key numbers per subject (mL unless stated); flagged values in bold red.</caption>
<thead><tr><th scope="col">Subject</th>{% for c in columns %}<th scope="col" class="n">{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in rows %}<tr id="s-{{ loop.index0 }}"><th scope="row">{% if r.link %}<a href="{{ r.link }}">{{ r.subject }}</a>{% else %}{{ r.subject }}{% endif %}</th>{% for c in columns %}<td class="n{% if c in r.flags %} flag{% endif %}">{{ r[c]|num }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table></div>
</section>
</main>
</body>
</html>
"""

TEMPLATES = {"report.html": REPORT_HTML, "report.md": REPORT_MD, "cohort.html": COHORT_HTML}
