"""The site's office account, owner of listings whose realtor it does not know."""

from django.contrib.auth.hashers import make_password
from django.db import migrations


def create_office(apps, schema_editor):
    Account = apps.get_model("realty", "Account")
    Account.objects.create(
        username="office",
        email="office@realty.example",
        password=make_password(None),
        is_owner=True,
        user_type=1,
    )


class Migration(migrations.Migration):
    dependencies = [("realty", "0001_initial")]

    operations = [migrations.RunPython(create_office, migrations.RunPython.noop)]
