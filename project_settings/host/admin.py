"""The host site's own admin: its users (agents) and areas.

The host's Property is not registered here: pfsync_app's admin shows the same
table through pfsync's model, with the images and run history beside it.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from project_settings.host.models import Area, User

PROPERTY_FINDER_FIELDS = ("phone", "role", "pf_user_id", "pf_public_profile_id")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Property Finder", {"fields": PROPERTY_FINDER_FIELDS}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Property Finder", {"classes": ("wide",), "fields": PROPERTY_FINDER_FIELDS}),
    )
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "role",
        "pf_user_id",
        "is_active",
        "is_staff",
    )
    list_filter = (*DjangoUserAdmin.list_filter, "role")
    search_fields = (*DjangoUserAdmin.search_fields, "phone", "pf_user_id")


@admin.register(Area)
class AreaAdmin(admin.ModelAdmin):
    list_display = ("name", "pf_location_id")
    search_fields = ("name", "pf_location_id")
    ordering = ("name",)
