"""The realty site's own tables, as its own migrations create them."""

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


class Account(AbstractUser):
    """The site's users: owners, and realtors (the agents)."""

    OWNER, REALTOR = 1, 2

    phone_number = models.CharField(max_length=20, blank=True)
    is_owner = models.BooleanField(default=False)
    is_realtor = models.BooleanField(default=False)
    user_type = models.PositiveSmallIntegerField()  # NOT NULL, and no default anywhere

    class Meta:
        db_table = "accounts_account"


class Realtor(models.Model):
    """A realtor's public card (a site variant keeps its agents here, not among its users)."""

    first_name = models.CharField(max_length=60)
    last_name = models.CharField(max_length=60, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=20, blank=True)

    class Meta:
        db_table = "realty_realtor"

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Listing(models.Model):
    """A property for sale or rent."""

    owner = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="listings")
    realtor = models.ForeignKey(Realtor, null=True, blank=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=100)
    slug = models.SlugField(max_length=140, unique=True)
    description = models.TextField(blank=True)
    location = models.CharField(max_length=120)
    price = models.IntegerField()
    bedrooms = models.PositiveSmallIntegerField(null=True, blank=True)
    bathrooms = models.PositiveSmallIntegerField(null=True, blank=True)
    sqft = models.IntegerField()
    kind = models.CharField(max_length=30, blank=True)
    purpose = models.CharField(max_length=10, blank=True)
    image = models.ImageField(upload_to="listings")
    permit_number = models.CharField(max_length=40, blank=True)
    amenities = models.JSONField(default=list, blank=True)
    parking = models.PositiveSmallIntegerField(null=True, blank=True)
    yearly_rent = models.IntegerField(null=True, blank=True)
    is_published = models.BooleanField(default=True)
    views = models.PositiveIntegerField()  # NOT NULL, and no default anywhere
    listed_on = models.DateTimeField(default=timezone.now)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "listings_listing"

    def __str__(self) -> str:
        return self.title


class ListingImage(models.Model):
    """A photo of a listing and its thumbnail."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="photos")
    image = models.ImageField(upload_to="listings/photos")
    thumbnail = models.ImageField(upload_to="listings/thumbs")

    class Meta:
        db_table = "listings_listingimage"

    def __str__(self) -> str:
        return self.image.name
