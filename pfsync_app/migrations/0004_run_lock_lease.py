# The writer lock becomes a lease on its row (a session advisory lock does not survive a
# transaction pooler such as PgBouncer).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pfsync_app', '0003_entry_causes_alerts_overview'),
    ]

    operations = [
        migrations.AddField(
            model_name='runlock',
            name='token',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.AddField(
            model_name='runlock',
            name='expires_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
