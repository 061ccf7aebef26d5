"""`{% run_timeline run %}`: the run page's stage timeline, the same fragment the page
re-fetches (jobs:run-timeline) when a stage changes."""
from django import template

from ..run_views import run_timeline as run_timeline_context

register = template.Library()


@register.inclusion_tag("jobs/run_timeline.html", takes_context=True)
def run_timeline(context, run):
    return run_timeline_context(run, viewer=context["request"].user)
