"""`{% run_timeline run %}`: the run page's stage timeline, the same fragment the page
re-fetches (jobs:run-timeline) when a stage changes. `{% figure row name %}`: a headline figure
of the report with its 95% interval and sample size, or why it is not given (report_figures)."""
from django import template
from django.utils.html import format_html

from ..report_figures import figure_parts, figure_problem
from ..run_views import run_timeline as run_timeline_context

register = template.Library()


@register.inclusion_tag("jobs/run_timeline.html", takes_context=True)
def run_timeline(context, run):
    return run_timeline_context(run, viewer=context["request"].user)


@register.simple_tag
def figure(row, name):
    """`0.693 <small class="interval">[0.58, 0.80], n 60+30</small>`; "—" without the figure;
    `<span class="figure-problem">not given: why</span>` where the evaluation declined it."""
    value, interval = figure_parts(row or {}, name)
    if figure_problem(row or {}, name):
        return format_html('<span class="figure-problem">{}</span>', value)
    if interval is None:
        return value
    return format_html('{} <small class="interval">{}</small>', value, interval)
