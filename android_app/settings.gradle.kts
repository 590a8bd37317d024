// The Android build of the harness: open android_app/ in Android Studio, or run
// `./gradlew assembleRelease` here (docs/android.md). Maven (pom.xml) builds and tests
// the JVM core and compile-checks the app on machines without the Android SDK.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "dapter-bench"
include(":core", ":app")
