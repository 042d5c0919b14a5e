"""The realty site's receivers of pfsync's signals: the examples README.md shows.

- a new listing gets a slug (a UNIQUE NOT NULL column pfsync knows nothing of);
- a new listing whose map fills no owner (its agents are realtors) is the office's;
- a new photo gets the site's thumbnail, made from the stored file.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.dispatch import receiver
from django.utils.text import slugify
from PIL import Image

from pfsync_app.signals import after_image_save, before_property_save
from tests.hosts.realty.models import Account, ListingImage

THUMBNAIL_SIZE = (320, 320)


@receiver(before_property_save)
def fill_slug(sender, values, created, listing, **kwargs):
    """A new listing's slug: its title, and its Property Finder id to keep it unique."""
    if created:
        values["slug"] = f"{slugify(values['title'])[:100]}-{listing.id.lower()}"


@receiver(before_property_save)
def office_owns_what_nobody_else_does(sender, values, created, **kwargs):
    """A new listing's owner, when the map fills none: the office account."""
    if created and values.get("owner_id") is None:
        values["owner_id"] = Account.objects.get(username="office").pk


@receiver(after_image_save)
def make_thumbnail(sender, image_id, created, **kwargs):
    """A new photo's thumbnail, saved next to the site's other thumbnails."""
    if not created:
        return
    photo = ListingImage.objects.get(pk=image_id)
    with default_storage.open(photo.image.name, "rb") as original:
        picture = Image.open(original)
        picture.thumbnail(THUMBNAIL_SIZE)
        out = io.BytesIO()
        picture.convert("RGB").save(out, "JPEG")
    name = default_storage.save(
        f"listings/thumbs/{PurePosixPath(photo.image.name).stem}.jpg", ContentFile(out.getvalue())
    )
    ListingImage.objects.filter(pk=image_id).update(thumbnail=name)
