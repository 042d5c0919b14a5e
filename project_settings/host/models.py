"""The host site's own tables, exactly as ../shared/HOST_SCHEMA.md describes them.

pfsync does not use these classes: it maps the same tables with its own
unmanaged models, as it would on a real host. These exist so that the demo,
tests and benchmarks run against the production schema.
"""

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """The site's AUTH_USER_MODEL; agents live here."""

    phone = models.CharField(max_length=32, default="", db_default="", blank=True)
    role = models.CharField(max_length=32, default="", db_default="", blank=True)
    pf_user_id = models.IntegerField(null=True, blank=True, unique=True)
    pf_public_profile_id = models.IntegerField(null=True, blank=True, unique=True)

    class Meta:
        db_table = "users_user"


class Area(models.Model):
    """An area of the site (a Property Finder location once linked)."""

    name = models.CharField(max_length=255)
    pf_location_id = models.IntegerField(null=True, blank=True, unique=True)

    class Meta:
        db_table = "areas_area"

    def __str__(self) -> str:
        return self.name


class Property(models.Model):
    """A property listing on the site."""

    pf_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    reference = models.CharField(max_length=64, default="", db_default="", blank=True)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    area = models.ForeignKey(Area, null=True, blank=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=255, default="", db_default="", blank=True)
    title_ar = models.CharField(max_length=255, default="", db_default="", blank=True)
    description = models.TextField(default="", db_default="", blank=True)
    description_ar = models.TextField(default="", db_default="", blank=True)
    category = models.CharField(max_length=32, default="", db_default="", blank=True)
    property_type = models.CharField(max_length=32, default="", db_default="", blank=True)
    status_type = models.CharField(max_length=16, default="", db_default="", blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    price_period = models.CharField(max_length=16, default="", db_default="", blank=True)
    bedrooms = models.SmallIntegerField(null=True, blank=True)
    bathrooms = models.SmallIntegerField(null=True, blank=True)
    size = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    furnishing = models.CharField(max_length=32, default="", db_default="", blank=True)
    is_published = models.BooleanField(default=False, db_default=False)
    pf_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "properties_property"
        verbose_name_plural = "properties"

    def __str__(self) -> str:
        return self.title or self.pf_id or f"Property {self.pk}"


class PropertyImage(models.Model):
    """One image of a property; the file lives in the default storage."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="images")
    image = models.CharField(max_length=255)
    source_url = models.CharField(max_length=1024, default="", db_default="", blank=True)
    position = models.IntegerField(default=0, db_default=0)
    width = models.IntegerField(null=True, blank=True)
    height = models.IntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True, db_default=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "properties_propertyimage"

    def __str__(self) -> str:
        return self.image
