"""The API tokens page: a logged-in user creates and revokes their own tokens (jobs.tokens)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from .tokens import ApiTokenError, api_token_create, api_token_revoke, api_tokens_of


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """GET: the user's tokens. POST: create one and show its key, this once."""
    context = {"tokens": api_tokens_of(request.user), "new_key": None, "new_token": None, "name": ""}
    if request.method == "POST":
        try:
            token, key = api_token_create(user=request.user, name=request.POST.get("name", ""))
        except ApiTokenError as error:
            context.update(error=str(error), name=request.POST.get("name", ""))
            return render(request, "jobs/api_tokens.html", context, status=400)
        context.update(new_key=key, new_token=token, tokens=api_tokens_of(request.user))
    return render(request, "jobs/api_tokens.html", context)


@login_required
@require_POST
def api_token_revoke_view(request, token_id: int):
    token = get_object_or_404(api_tokens_of(request.user), pk=token_id)  # only one's own tokens
    api_token_revoke(token=token)
    messages.success(request, f"API token {token.prefix}… ({token.name}) revoked")
    return redirect("jobs:api-tokens")
